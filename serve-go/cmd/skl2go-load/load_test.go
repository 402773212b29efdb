package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skl2go/grpc/inferencepb"
)

func TestHistogramPercentilesWithinItsPrecision(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		p      float64
		want   int64
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []int64{700}, 0.99, 700},
		{"small values are exact", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5},
		{"max is exact", []int64{100, 123_456}, 1, 123_456},
		{"p99 of 1..1000", seq(1, 1000), 0.99, 990},
		{"p50 of 1..100000", seq(1, 100_000), 0.5, 50_000},
		{"negative counts as 0", []int64{-5}, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistogram()
			for _, v := range tt.values {
				h.record(v)
			}
			got := h.percentile(tt.p)
			if diff := math.Abs(float64(got - tt.want)); diff > float64(tt.want)/(1<<subBits)+0.5 {
				t.Fatalf("percentile(%g) = %d, want %d within 1/%d", tt.p, got, tt.want, 1<<subBits)
			}
		})
	}
}

func TestBucketsCoverEveryValueInOrder(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		b := bucket(v)
		if b <= prev && v != 0 {
			t.Fatalf("bucket(%d) = %d, not after %d", v, b, prev)
		}
		if lo := lowest(b); lo > v || (v-lo) > v>>subBits {
			t.Fatalf("bucket(%d) = %d starts at %d: not within 1/%d below", v, b, lo, 1<<subBits)
		}
		if b >= len(newHistogram().counts) {
			t.Fatalf("bucket(%d) = %d beyond the histogram", v, b)
		}
		prev = b
	}
}

func seq(from, to int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func TestDueSpacesRequestsAtTheRate(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		rate float64
		i    int64
		want time.Duration
	}{
		{0, 7, 0}, // closed loop: always due
		{1000, 0, 0},
		{1000, 1, time.Millisecond},
		{2500, 2500, time.Second},
		{3, 1, time.Second / 3},
	}
	for _, tt := range tests {
		if got := (pace{rate: tt.rate}).due(start, tt.i).Sub(start); got != tt.want {
			t.Errorf("rate %g: request %d due after %s, want %s", tt.rate, tt.i, got, tt.want)
		}
	}
}

func TestDriveSendsEachRequestOnceAndNeverBeforeItIsDue(t *testing.T) {
	tests := []struct {
		name string
		p    pace
		want int64
	}{
		{"paced, bounded by requests", pace{rate: 2000, workers: 4, duration: time.Minute, requests: 60}, 60},
		{"paced, bounded by duration", pace{rate: 1000, workers: 8, duration: 50 * time.Millisecond, requests: 1 << 40}, 50},
		{"closed loop", pace{workers: 3, duration: time.Minute, requests: 25}, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			sent := map[int64]time.Time{}
			tl := newTally()
			start := time.Now()
			drive(context.Background(), tt.p, func(i int64) outcome {
				mu.Lock()
				defer mu.Unlock()
				if _, again := sent[i]; again {
					t.Errorf("request %d sent twice", i)
				}
				sent[i] = time.Now()
				return outcome{version: "1"}
			}, tl)
			r := tl.result("rest", "x", tt.p.rate, time.Second)
			if r.Requests != tt.want || r.OK != tt.want || int64(len(sent)) != tt.want || r.Versions["1"] != tt.want {
				t.Fatalf("requests %d, ok %d, distinct %d, versions %v: want %d", r.Requests, r.OK, len(sent), r.Versions, tt.want)
			}
			for i, at := range sent {
				if due := tt.p.due(start, i); at.Before(due) {
					t.Fatalf("request %d sent %s before it was due", i, due.Sub(at))
				}
			}
		})
	}
}

func TestDriveStopsWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	tl := newTally()
	drive(ctx, pace{rate: 100, workers: 2, duration: time.Hour, requests: 1 << 40}, func(i int64) outcome {
		if n.Add(1) == 5 {
			cancel()
		}
		return outcome{version: "1"}
	}, tl)
	if got := tl.result("rest", "x", 100, time.Second).Requests; got < 5 || got > 7 {
		t.Fatalf("%d requests after a cancel at the fifth", got)
	}
}

func TestTallyCountsErrorsByKindWithTheirFirstMessage(t *testing.T) {
	tl := newTally()
	for _, o := range []outcome{{version: "2"}, {kind: "status 503", detail: "first"}, {kind: "status 503", detail: "second"},
		{kind: "connection", detail: "refused"}, {version: "3", resent: true}, {version: "2", retries: 2}} {
		tl.add(o, time.Millisecond, 0)
	}
	tl.add(outcome{version: "2"}, time.Millisecond, 20*time.Millisecond)
	r := tl.result("rest", "x", 10, 2*time.Second)
	want := Result{Requests: 7, OK: 4, Errors: map[string]int64{"status 503": 2, "connection": 1},
		FirstErrors: map[string]string{"status 503": "first", "connection": "refused"},
		Versions:    map[string]int64{"2": 3, "3": 1}, Resent: 1, Retries: 2, Late: 1, AchievedRPS: 3.5}
	got := Result{Requests: r.Requests, OK: r.OK, Errors: r.Errors, FirstErrors: r.FirstErrors, Versions: r.Versions,
		Resent: r.Resent, Retries: r.Retries, Late: r.Late, AchievedRPS: r.AchievedRPS}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Fatalf("got %s\nwant %s", g, w)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestCheckAnswer(t *testing.T) {
	v12 := map[string]bool{"1": true, "2": true}
	tests := []struct {
		name     string
		answer   string
		rows     int
		versions map[string]bool
		kind     string
		version  string
	}{
		{"good", `{"model":"m","version":2,"predictions":[12.5]}`, 1, nil, "", "2"},
		{"good, two rows, allowed version", `{"model":"m","version":1,"predictions":[1,2]}`, 2, v12, "", "1"},
		{"classifier", `{"model":"m","version":1,"predictions":[{"label":1,"probabilities":[0.2,0.8]}]}`, 1, nil, "", "1"},
		{"not JSON", `<html>`, 1, nil, "answer", ""},
		{"other model", `{"model":"n","version":1,"predictions":[1]}`, 1, nil, "answer", ""},
		{"no model", `{"version":1,"predictions":[1]}`, 1, nil, "answer", ""},
		{"too few predictions", `{"model":"m","version":1,"predictions":[1]}`, 2, nil, "answer", ""},
		{"null prediction", `{"model":"m","version":1,"predictions":[null]}`, 1, nil, "answer", ""},
		{"string prediction", `{"model":"m","version":1,"predictions":["NaN"]}`, 1, nil, "answer", ""},
		{"version not an integer", `{"model":"m","version":"1","predictions":[1]}`, 1, nil, "answer", ""},
		{"version 0", `{"model":"m","version":0,"predictions":[1]}`, 1, nil, "answer", ""},
		{"version not allowed", `{"model":"m","version":3,"predictions":[1]}`, 1, v12, "version", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := checkAnswer([]byte(tt.answer), tt.rows, "m", tt.versions)
			if o.kind != tt.kind || o.version != tt.version || (o.kind != "") != (o.detail != "") {
				t.Fatalf("got %+v, want kind %q version %q", o, tt.kind, tt.version)
			}
		})
	}
}

func TestCheckInfer(t *testing.T) {
	fp32 := func(vs ...float32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	answer := func(model, version, datatype string, shape []int64, raw []byte, contents *inferencepb.InferTensorContents) *inferencepb.ModelInferResponse {
		r := &inferencepb.ModelInferResponse{ModelName: model, ModelVersion: version,
			Outputs: []*inferencepb.ModelInferResponse_InferOutputTensor{{Name: "variable", Datatype: datatype, Shape: shape, Contents: contents}}}
		if raw != nil {
			r.RawOutputContents = [][]byte{raw}
		}
		return r
	}
	tests := []struct {
		name string
		resp *inferencepb.ModelInferResponse
		rows int
		kind string
	}{
		{"raw FP32", answer("m", "1", "FP32", []int64{2, 1}, fp32(1.5, 2), nil), 2, ""},
		{"typed FP64", answer("m", "2", "FP64", []int64{1, 1}, nil, &inferencepb.InferTensorContents{Fp64Contents: []float64{3}}), 1, ""},
		{"labels", answer("m", "1", "INT64", []int64{1}, []byte{1, 0, 0, 0, 0, 0, 0, 0}, nil), 1, ""},
		{"other model", answer("n", "1", "FP32", []int64{1, 1}, fp32(1), nil), 1, "answer"},
		{"bad version", answer("m", "x", "FP32", []int64{1, 1}, fp32(1), nil), 1, "answer"},
		{"version not allowed", answer("m", "3", "FP32", []int64{1, 1}, fp32(1), nil), 1, "version"},
		{"wrong row count", answer("m", "1", "FP32", []int64{1, 1}, fp32(1), nil), 2, "answer"},
		{"values missing", answer("m", "1", "FP32", []int64{2, 1}, fp32(1), nil), 2, "answer"},
		{"NaN", answer("m", "1", "FP32", []int64{1, 1}, fp32(float32(math.NaN())), nil), 1, "answer"},
		{"no outputs", &inferencepb.ModelInferResponse{ModelName: "m", ModelVersion: "1"}, 1, "answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := checkInfer(tt.resp, tt.rows, "m", map[string]bool{"1": true, "2": true})
			if o.kind != tt.kind {
				t.Fatalf("got %+v, want kind %q", o, tt.kind)
			}
		})
	}
}

func TestParseRefusesBadFlagsNamingThem(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-bodies", "b", "-protocol", "http"}, "-protocol"},
		{[]string{}, "-bodies"},
		{[]string{"-bodies", "b", "-duration", "5h"}, "-duration"},
		{[]string{"-bodies", "b", "-rate", "-1"}, "-rate"},
		{[]string{"-bodies", "b", "-workers", "0"}, "-workers"},
		{[]string{"-bodies", "b", "-versions", "1,x"}, "-versions"},
		{[]string{"-bodies", "b", "extra"}, "arguments"},
	}
	for _, tt := range tests {
		_, err := parse(tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parse(%q) = %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
}

// predictServer answers v1 predicts like a replica (version 1); with
// dropSecond, the second request on each connection finds it closed, as a
// request sent on an idle connection nginx's reload closes does.
func predictServer(t *testing.T, dropSecond bool) *httptest.Server {
	var mu sync.Mutex
	served := map[string]int{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var doc struct{ Instances []any }
		if err := json.NewDecoder(r.Body).Decode(&doc); err != nil || r.URL.Path != "/v1/models/m:predict" {
			http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		served[r.RemoteAddr]++
		n := served[r.RemoteAddr]
		mu.Unlock()
		if dropSecond && n == 2 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		preds := make([]float64, len(doc.Instances))
		json.NewEncoder(w).Encode(map[string]any{"model": "m", "version": 1, "predictions": preds})
	}))
	t.Cleanup(s.Close)
	return s
}

func writeBodies(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "bodies.jsonl")
	data := `{"instances":[{"a":1}]}` + "\n" + `{"instances":[{"a":1},{"a":2}]}` + "\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runLoad(t *testing.T, args ...string) Result {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var line map[string]Result
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return line["load"]
}

func TestRESTRunChecksEveryAnswer(t *testing.T) {
	s := predictServer(t, false)
	bodies := writeBodies(t)
	r := runLoad(t, "-addr", s.URL, "-model", "m", "-bodies", bodies, "-rate", "500", "-requests", "40", "-workers", "4", "-versions", "1")
	if r.Requests != 40 || r.OK != 40 || len(r.Errors) != 0 || r.Versions["1"] != 40 || r.Protocol != "rest" {
		t.Fatalf("%+v", r)
	}
	r = runLoad(t, "-addr", s.URL, "-model", "m", "-bodies", bodies, "-requests", "10", "-workers", "2", "-versions", "2")
	if r.OK != 0 || r.Errors["version"] != 10 {
		t.Fatalf("answers of version 1 with -versions 2: %+v", r)
	}
	r = runLoad(t, "-addr", s.URL, "-model", "other", "-bodies", bodies, "-requests", "10", "-workers", "2")
	if r.OK != 0 || r.Errors["status 400"] != 10 || r.FirstErrors["status 400"] == "" {
		t.Fatalf("answers to another model's path: %+v", r)
	}
}

func TestRESTResendsOnlyWhatAClosedKeptAliveConnectionLost(t *testing.T) {
	s := predictServer(t, true)
	r := runLoad(t, "-addr", s.URL, "-model", "m", "-bodies", writeBodies(t), "-requests", "6", "-workers", "1")
	// One worker: the second request on each connection finds it closed and
	// goes again, once, on a new connection.
	if r.OK != 6 || len(r.Errors) != 0 || r.Resent == 0 {
		t.Fatalf("%+v", r)
	}
}

func TestRESTCountsUnavailableAnswersApartWithTheirRetryAfter(t *testing.T) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch n.Add(1) % 3 {
		case 0:
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error": "overloaded"}`, http.StatusServiceUnavailable)
		case 1:
			http.Error(w, `{"error": "overloaded"}`, http.StatusServiceUnavailable)
		default:
			http.Error(w, `{"error": "bad"}`, http.StatusBadRequest)
		}
	}))
	t.Cleanup(s.Close)
	r := runLoad(t, "-addr", s.URL, "-model", "m", "-bodies", writeBodies(t), "-requests", "30", "-workers", "1")
	if r.Errors["status 503"] != 20 || r.Errors["status 400"] != 10 || r.Unavailable.Count != 20 ||
		r.Unavailable.NoRetryAfter != 10 || r.Unavailable.LatencyUS["max"].(float64) <= 0 {
		t.Fatalf("%+v", r)
	}
}
