package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
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

// restTarget posts predict bodies to one URL over kept-alive connections.
type restTarget struct {
	client   *http.Client
	fresh    *http.Client // a new connection for each request: for resends
	url      string
	model    string
	versions map[string]bool
	bodies   []body
}

// newRESTTarget's connections are closed after idle of idle: below the
// server's keep-alive timeout (nginx's is 30 s), so that the client, not the
// server, closes an idle connection, and a request never races the
// server's close of the connection it was sent on.
func newRESTTarget(base, model string, bodies []body, versions map[string]bool, workers int, timeout, idle time.Duration) *restTarget {
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport := &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		IdleConnTimeout:     idle,
		DisableCompression:  true,
	}
	fresh := &http.Transport{DialContext: dial, DisableKeepAlives: true, DisableCompression: true}
	return &restTarget{client: &http.Client{Transport: transport, Timeout: timeout},
		fresh: &http.Client{Transport: fresh, Timeout: timeout},
		url:   base + "/v1/models/" + model + ":predict", model: model, versions: versions, bodies: bodies}
}

// send posts body i (round robin) and checks the answer.
//
// A POST is sent a second time, on a new connection, only when it failed on
// a kept-alive connection before any byte of an answer came back: the
// server closed that connection as it went idle (what nginx's reload does
// to its old workers' idle connections; its keep-alive timeout cannot, see
// newRESTTarget), so the request was never taken up. Go's transport does that by itself only when it wrote nothing; here
// the case where the write reached a closing socket counts too, and is
// counted (resent), because a prediction is pure: were it taken up after
// all, answering it twice changes nothing. A timeout is never resent.
func (r *restTarget) send(i int64) outcome {
	b := r.bodies[i%int64(len(r.bodies))]
	o, reused := r.post(r.client, b)
	if o.kind == "connection" && reused {
		o, _ = r.post(r.fresh, b)
		o.resent = true
	}
	return o
}

func (r *restTarget) post(client *http.Client, b body) (outcome, bool) {
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(b.data))
	if err != nil {
		return outcome{kind: "request", detail: err.Error()}, false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return outcome{kind: errorKind(err), detail: err.Error()}, reused
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return outcome{kind: errorKind(err), detail: "reading the answer: " + err.Error()}, false
	}
	if resp.StatusCode != http.StatusOK {
		return outcome{kind: "status " + strconv.Itoa(resp.StatusCode), detail: string(answer[:min(len(answer), 200)])}, false
	}
	return checkAnswer(answer, b.rows, r.model, r.versions), false
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
