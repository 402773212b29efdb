package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// body is one v1 predict request: its bytes as sent, and how many instances
// (so how many predictions the answer must have).
type body struct {
	data []byte
	rows int
}

// readBodies reads v1 predict bodies, one per line.
func readBodies(data []byte, path string) ([]body, error) {
	var out []body
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var doc struct {
			Instances []json.RawMessage `json:"instances"`
		}
		if err := json.Unmarshal(line, &doc); err != nil || len(doc.Instances) == 0 {
			return nil, fmt.Errorf("%s:%d: expected {\"instances\": [...]}", path, n+1)
		}
		out = append(out, body{data: line, rows: len(doc.Instances)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no bodies", path)
	}
	return out, nil
}

// restTarget posts predict bodies to one address over kept-alive HTTP/1.1
// connections, one request at a time on each: a request is one write of
// bytes prepared beforehand and its answer one read, with no goroutines
// between (net/http's client costs several times the CPU per request, which
// on a machine shared with the servers it loads is taken from them).
type restTarget struct {
	addr     string // host:port
	requests [][]byte
	bodies   []body
	model    string
	versions map[string]bool
	timeout  time.Duration
	idle     time.Duration
	conns    chan *restConn // idle connections, taken in turn
}

type restConn struct {
	net.Conn
	r    *bufio.Reader
	last time.Time // when its last answer was read
}

// newRESTTarget posts to base (http://host:port). A connection idle for
// idle is closed rather than used: below the server's keep-alive timeout
// (nginx's is 30 s), so that the client, not the server, closes an idle
// connection, and a request never races the server's close of the one it
// was sent on.
func newRESTTarget(base, model string, bodies []body, versions map[string]bool, workers int, timeout, idle time.Duration) (*restTarget, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, &flagError{"-addr", fmt.Sprintf("host:port or http://host:port, got %q", base)}
	}
	t := &restTarget{addr: u.Host, bodies: bodies, model: model, versions: versions, timeout: timeout, idle: idle,
		conns: make(chan *restConn, workers)}
	for _, b := range bodies {
		head := fmt.Sprintf("POST /v1/models/%s:predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\n\r\n", url.PathEscape(model), u.Host, len(b.data))
		t.requests = append(t.requests, append([]byte(head), b.data...))
	}
	return t, nil
}

// send posts body i (round robin) and checks the answer.
//
// A POST is sent a second time, on a new connection, only when it failed on
// a kept-alive connection before an answer's status line came back: the
// server closed that connection as it went idle (what nginx's reload does
// to its old workers' idle connections; its keep-alive timeout cannot, see
// newRESTTarget), so the request was never taken up. Go's net/http does
// that by itself only when it wrote nothing; here the case where the write
// reached a closing socket counts too, and is counted (resent), because a
// prediction is pure: were it taken up after all, answering it twice
// changes nothing. A timeout is never resent.
func (t *restTarget) send(i int64) outcome {
	n := int(i % int64(len(t.requests)))
	c, reused := t.take()
	o, lost := t.post(c, n)
	if lost && reused {
		o, _ = t.post(nil, n)
		o.resent = true
	}
	return o
}

// take is an idle connection (reused) or nil, for post to dial.
func (t *restTarget) take() (*restConn, bool) {
	for {
		select {
		case c := <-t.conns:
			if time.Since(c.last) < t.idle {
				return c, true
			}
			c.Close()
		default:
			return nil, false
		}
	}
}

// post sends request n on c (nil: a new connection) and reads its answer;
// lost says the connection failed before the answer's status line.
func (t *restTarget) post(c *restConn, n int) (o outcome, lost bool) {
	if c == nil {
		conn, err := net.DialTimeout("tcp", t.addr, min(t.timeout, 5*time.Second))
		if err != nil {
			return outcome{kind: errorKind(err), detail: err.Error()}, false
		}
		c = &restConn{Conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
	}
	keep := false
	defer func() {
		if keep {
			c.last = time.Now()
			select {
			case t.conns <- c:
				return
			default:
			}
		}
		c.Close()
	}()
	c.SetDeadline(time.Now().Add(t.timeout))
	if _, err := c.Write(t.requests[n]); err != nil {
		return outcome{kind: errorKind(err), detail: err.Error()}, true
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return outcome{kind: errorKind(err), detail: "reading the answer: " + err.Error()}, errorKind(err) == "connection"
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return outcome{kind: errorKind(err), detail: "reading the answer: " + err.Error()}, false
	}
	keep = !resp.Close
	if resp.StatusCode != http.StatusOK {
		return outcome{kind: "status " + strconv.Itoa(resp.StatusCode), detail: string(answer[:min(len(answer), 200)]),
			status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After") != ""}, false
	}
	return checkAnswer(answer, t.bodies[n].rows, t.model, t.versions), false
}

// errorKind names a transport error: "timeout" or "connection" (refused,
// reset, closed before an answer).
func errorKind(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return "connection"
}

// checkAnswer checks a 200 answer to a v1 predict of rows instances: JSON
// naming the model, one prediction per instance, each a finite number or a
// classifier's {"label", "probabilities"}, and an integer version among
// versions (nil: any). Kind "answer" or "version" says what was wrong.
func checkAnswer(answer []byte, rows int, model string, versions map[string]bool) outcome {
	var doc struct {
		Model       *string           `json:"model"`
		Version     json.RawMessage   `json:"version"`
		Predictions []json.RawMessage `json:"predictions"`
	}
	if err := json.Unmarshal(answer, &doc); err != nil {
		return outcome{kind: "answer", detail: "not a JSON object: " + string(answer[:min(len(answer), 100)])}
	}
	if doc.Model == nil || *doc.Model != model {
		return outcome{kind: "answer", detail: fmt.Sprintf("model is not %q: %.100s", model, answer)}
	}
	if len(doc.Predictions) != rows {
		return outcome{kind: "answer", detail: fmt.Sprintf("%d predictions for %d instances", len(doc.Predictions), rows)}
	}
	for n, p := range doc.Predictions {
		if !isPrediction(p) {
			return outcome{kind: "answer", detail: fmt.Sprintf("prediction %d is not a finite number or {label, probabilities}: %.100s", n, p)}
		}
	}
	v, err := strconv.Atoi(string(doc.Version))
	if err != nil || v < 1 {
		return outcome{kind: "answer", detail: fmt.Sprintf("version is not a positive integer: %.20s", doc.Version)}
	}
	if version := strconv.Itoa(v); !allowed(versions, version) {
		return outcome{kind: "version", detail: fmt.Sprintf("version %s, not one of %v", version, sortedKeys(versions))}
	}
	return outcome{version: strconv.Itoa(v)}
}

func isPrediction(p json.RawMessage) bool {
	if string(bytes.TrimSpace(p)) == "null" {
		return false
	}
	var f float64
	if err := json.Unmarshal(p, &f); err == nil {
		return !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	var c struct {
		Label         *json.RawMessage `json:"label"`
		Probabilities []float64        `json:"probabilities"`
	}
	return json.Unmarshal(p, &c) == nil && c.Label != nil && c.Probabilities != nil
}
