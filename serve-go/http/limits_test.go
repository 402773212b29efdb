package http_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

// blocked is the fixture model's metadata with predictions that wait
// until release is closed.
type blocked struct {
	meta    *skl2go.Metadata
	started chan struct{}
	release chan struct{}
}

func (b *blocked) Metadata() *skl2go.Metadata { return b.meta }
func (b *blocked) Close() error               { return nil }
func (b *blocked) Predict(ctx context.Context, batch *skl2go.Batch) ([]skl2go.Output, error) {
	b.started <- struct{}{}
	<-b.release
	return []skl2go.Output{{Name: "variable", Type: skl2go.Float32, Shape: []int64{int64(batch.Rows), 1},
		Values: skl2go.Values{Float32: make([]float32, batch.Rows)}}}, nil
}

func fixtureMetadata(t *testing.T) *skl2go.Metadata {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(models, fixture.Model, "1", "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := skl2go.ParseMetadata(data)
	if err != nil {
		t.Fatal(err)
	}
	return meta
}

func TestOverloadAnswersAFast503WithRetryAfter(t *testing.T) {
	model := &blocked{meta: fixtureMetadata(t), started: make(chan struct{}, 1), release: make(chan struct{})}
	limiter := skl2go.NewLimiter(1, 0, time.Minute) // one at a time, nobody waits
	store := repository.NewStore(limiter.Wrap(model))
	s := skhttp.NewServer(store, skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 10, Limiter: limiter},
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	s.SetReady(true)
	body, _ := examples(model.meta)
	first := make(chan response, 1)
	go func() {
		first <- do(t, s.Handler(), "POST", "/v1/models/trip_duration:predict", "application/json", body)
	}()
	<-model.started

	r := do(t, s.Handler(), "POST", "/v1/models/trip_duration:predict", "application/json", body)
	if r.status != 503 || r.header.Get("Retry-After") != "1" || !strings.Contains(r.body["error"].(string), "server overloaded") {
		t.Errorf("second request while the first runs: %d Retry-After=%q %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	metrics := do(t, s.Handler(), "GET", "/metrics", "", "").raw
	for _, line := range []string{"skl2go_predictions_running 1", "skl2go_predictions_waiting 0",
		`skl2go_inference_request_failure_total{model="trip_duration",protocol="v1",reason="overloaded",version="1"} 1`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	close(model.release)
	if r := <-first; r.status != 200 {
		t.Errorf("the first request: %d %s", r.status, r.raw)
	}
	if r := do(t, s.Handler(), "POST", "/v1/models/trip_duration:predict", "application/json", body); r.status != 200 {
		t.Errorf("after the overload: %d %s", r.status, r.raw)
	}
}

// serveOverTCP serves s on a loopback port until the test ends.
func serveOverTCP(t *testing.T, s *skhttp.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// readAll reads what the server sends until it closes the connection,
// failing the test if that takes more than 10 s.
func readAll(t *testing.T, conn net.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the server did not close a slow connection: %v (read %q)", err, data)
	}
	return string(data)
}

func TestSlowClientsAreCutOffAndDoNotHoldTheServer(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 1000,
		ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 400 * time.Millisecond})
	addr := serveOverTCP(t, s)
	body, _ := examples(meta)

	// Headers never finished: closed without an answer.
	slowHeaders, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slowHeaders.Close()
	io.WriteString(slowHeaders, "POST /v1/models/trip_duration:predict HTTP/1.1\r\nHost: x\r\n")

	// A body that stops halfway: 408 with a JSON error, then closed.
	slowBody, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slowBody.Close()
	io.WriteString(slowBody, "POST /v1/models/trip_duration:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+itoa(len(body))+"\r\n\r\n"+body[:len(body)/2])

	// Meanwhile other clients are served.
	resp, err := http.Post("http://"+addr+"/v1/models/trip_duration:predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a normal request beside two slow ones: %d", resp.StatusCode)
	}

	if got := readAll(t, slowHeaders); got != "" {
		t.Errorf("slow headers: the server answered %q; want the connection closed", got)
	}
	got := readAll(t, slowBody)
	answer, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	if err != nil {
		t.Fatalf("slow body: not an HTTP answer: %q", got)
	}
	data, _ := io.ReadAll(answer.Body)
	if answer.StatusCode != 408 || !strings.Contains(string(data), `"error":"request body not received in time`) {
		t.Errorf("slow body: %d %s; want 408 with a JSON error", answer.StatusCode, data)
	}
}
