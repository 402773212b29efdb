package http_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/onnx"
	"skl2go/repository"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

// newServer serves the fixture model (as versions 1 and 2) through the real
// runtime; it returns the metadata of version 2.
func newServer(t testing.TB, config skhttp.Config) (*skhttp.Server, *skl2go.Metadata) {
	t.Helper()
	s, meta, _ := newServerWithStore(t, config)
	return s, meta
}

func newServerWithStore(t testing.TB, config skhttp.Config) (*skhttp.Server, *skl2go.Metadata, *repository.Store) {
	t.Helper()
	root := t.TempDir()
	fixture.CopyVersion(t, models, root, 1)
	fixture.CopyVersion(t, models, root, 2)
	var loaded []skl2go.Model
	for _, v := range []int{1, 2} {
		entry, err := repository.Read(root, fixture.Model, v)
		if err != nil {
			t.Fatal(err)
		}
		m, err := runtime.Load(entry.Dir, entry.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		loaded = append(loaded, m)
	}
	store := repository.NewStore(loaded...)
	t.Cleanup(func() { store.Close() })
	if config.MaxBodyBytes == 0 {
		config = skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 1000}
	}
	s := skhttp.NewServer(store, config, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	s.SetReady(true)
	return s, loaded[1].Metadata(), store
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t testing.TB, h http.Handler, method, path, contentType, body string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, rec.Body.String())
		}
	}
	return r
}

// examples returns the predict body for model.json's examples and sklearn's predictions.
func examples(meta *skl2go.Metadata) (string, []float64) {
	instances, want := fixture.Examples(meta)
	body, _ := json.Marshal(map[string]any{"instances": instances})
	return string(body), want
}

func TestPredictMatchesSklearn(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	body, want := examples(meta)
	for _, path := range []string{"/v1/models/trip_duration:predict", "/v1/models/trip_duration/versions/1:predict"} {
		r := do(t, s.Handler(), "POST", path, "application/json; charset=utf-8", body)
		if r.status != 200 {
			t.Fatalf("%s: status %d: %s", path, r.status, r.raw)
		}
		preds := r.body["predictions"].([]any)
		if len(preds) != len(want) {
			t.Fatalf("%d predictions, want %d", len(preds), len(want))
		}
		for i, p := range preds {
			if !skl2go.WithinTolerance(p.(float64), want[i]) {
				t.Errorf("%s row %d: got %v, sklearn %v", path, i, p, want[i])
			}
		}
		if r.body["model"] != "trip_duration" {
			t.Errorf("model = %v", r.body["model"])
		}
	}
	latest := do(t, s.Handler(), "POST", "/v1/models/trip_duration:predict", "", body)
	pinned := do(t, s.Handler(), "POST", "/v1/models/trip_duration/versions/1:predict", "", body)
	if latest.body["version"] != 2.0 || pinned.body["version"] != 1.0 {
		t.Errorf("versions: latest %v, pinned %v; want 2 and 1", latest.body["version"], pinned.body["version"])
	}
}

func TestPredictRefusesBadRequests(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{MaxBodyBytes: 4096, MaxRows: 3})
	var ex map[string]any
	json.Unmarshal(meta.Examples[0].Instance, &ex)
	row := func(edit func(map[string]any)) string {
		r := map[string]any{}
		for k, v := range ex {
			r[k] = v
		}
		edit(r)
		b, _ := json.Marshal(map[string]any{"instances": []any{r}})
		return string(b)
	}
	good := row(func(map[string]any) {})
	goodRow := strings.TrimSuffix(strings.TrimPrefix(good, `{"instances":[`), `]}`)
	fourRows := `{"instances": [` + strings.Repeat(goodRow+",", 3) + goodRow + `]}`
	const predict = "/v1/models/trip_duration:predict"
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		message                         string
	}{
		{"missing field", "POST", predict, "application/json", row(func(r map[string]any) { delete(r, "trip_distance") }), 400, "instances[0].trip_distance: missing"},
		{"null field", "POST", predict, "application/json", row(func(r map[string]any) { r["pickup_hour"] = nil }), 400, "instances[0].pickup_hour: must not be null"},
		{"string for number", "POST", predict, "application/json", row(func(r map[string]any) { r["trip_distance"] = "2.5" }), 400, `instances[0].trip_distance: expected a number, got string "2.5"`},
		{"fraction for integer", "POST", predict, "application/json", row(func(r map[string]any) { r["PULocationID"] = 74.5 }), 400, "instances[0].PULocationID: expected an integer, got 74.5"},
		{"unknown field", "POST", predict, "application/json", row(func(r map[string]any) { r["fare_amount"] = 10 }), 400, "instances[0].fare_amount: unknown field"},
		{"empty instances", "POST", predict, "application/json", `{"instances": []}`, 400, "must contain at least one instance"},
		{"no instances", "POST", predict, "application/json", `{}`, 400, `missing field "instances"`},
		{"other top-level key", "POST", predict, "application/json", `{"rows": []}`, 400, `unknown field "rows" in the body: expected "instances" (rows) or "inputs" (columns)`},
		{"columns as rows", "POST", predict, "application/json", `{"inputs": []}`, 400, `inputs: expected an object of columns`},
		{"rows and columns", "POST", predict, "application/json", strings.TrimSuffix(good, "}") + `, "inputs": {}}`, 400, `the body has both "instances" and "inputs"`},
		{"body not an object", "POST", predict, "application/json", `[1, 2]`, 400, "body must be a JSON object"},
		{"empty body", "POST", predict, "application/json", ``, 400, "empty body"},
		{"object not closed", "POST", predict, "application/json", strings.TrimSuffix(good, "}"), 400, "malformed JSON: unexpected end of body"},
		{"open brace only", "POST", predict, "application/json", `{`, 400, "malformed JSON: unexpected end of body"},
		{"malformed JSON", "POST", predict, "application/json", `{"instances": [{"PULocationID": 7,}]}`, 400, "malformed JSON at byte"},
		{"NaN", "POST", predict, "application/json", `{"instances": [{"trip_distance": NaN}]}`, 400, "malformed JSON"},
		{"trailing data", "POST", predict, "application/json", good + ` {}`, 400, "data after the top-level object"},
		{"too many rows", "POST", predict, "application/json", fourRows, 413, "at most 3 per request"},
		{"body too large", "POST", predict, "application/json", `{"instances": [` + strings.Repeat(" ", 5000) + `]}`, 413, "request body too large: the limit is 4096 bytes"},
		{"wrong media type", "POST", predict, "text/plain", good, 415, "Content-Type must be application/json, got text/plain"},
		{"form post", "POST", predict, "application/x-www-form-urlencoded", good, 415, "Content-Type must be application/json"},
		{"unknown model", "POST", "/v1/models/nope:predict", "application/json", good, 404, `model "nope" not found (serving: trip_duration)`},
		{"unknown version", "POST", "/v1/models/trip_duration/versions/7:predict", "application/json", good, 404, `has no version 7 loaded (serving versions 1, 2)`},
		{"bad version", "POST", "/v1/models/trip_duration/versions/x:predict", "application/json", good, 400, `version must be a positive integer, got "x"`},
		{"path traversal", "POST", "/v1/models/..:predict", "application/json", good, 400, `invalid model name ".."`},
		{"encoded dots as the name", "POST", "/v1/models/%2e%2e:predict", "application/json", good, 400, `invalid model name ".."`},
		{"encoded slashes in the name", "POST", "/v1/models/..%2f..%2fetc:predict", "application/json", good, 404, "no such endpoint"},
		{"encoded slashes in the version", "POST", "/v1/models/trip_duration/versions/..%2f1:predict", "application/json", good, 404, "no such endpoint"},
		{"NUL in the name", "POST", "/v1/models/trip_duration%00:predict", "application/json", good, 400, `invalid model name "trip_duration\x00"`},
		{"dot-dot segments", "POST", "/v1/models/trip_duration/versions/1/../../trip_duration:predict", "application/json", good, 404, "no such endpoint"},
		{"dot-dot out of the API", "GET", "/v1/../metrics", "", "", 404, "no such endpoint"},
		{"dot segment", "GET", "/v1/./models", "", "", 404, "no such endpoint"},
		{"double slash", "GET", "//metrics", "", "", 404, "no such endpoint"},
		{"version zero", "POST", "/v1/models/trip_duration/versions/0:predict", "application/json", good, 400, `version must be a positive integer, got "0"`},
		{"version with a sign", "POST", "/v1/models/trip_duration/versions/+1:predict", "application/json", good, 400, `version must be a positive integer, got "+1"`},
		{"huge version", "POST", "/v1/models/trip_duration/versions/99999999999999999999:predict", "application/json", good, 400, "version must be a positive integer"},
		{"long name", "POST", "/v1/models/" + strings.Repeat("a", 129) + ":predict", "application/json", good, 400, "at most 128"},
		{"GET predict", "GET", predict, "", "", 405, "method GET not allowed: use POST"},
		{"POST metadata", "POST", "/v1/models/trip_duration", "application/json", good, 405, "method POST not allowed: use GET"},
		{"unknown endpoint", "GET", "/v2/models", "", "", 404, "no such endpoint: GET /v2/models"},
		{"deep model path", "GET", "/v1/models/trip_duration/labels", "", "", 404, "no such endpoint"},
		{"distance beyond its range", "POST", predict, "application/json", row(func(r map[string]any) { r["trip_distance"] = 3e38 }), 400,
			`instances[0].trip_distance: 3e+38 is out of range: the model accepts 0 to 1000`},
		{"dot-dot segment", "GET", "/v1/models/../healthz", "", "", 404, "no such endpoint: GET /v1/models/../healthz"},
		{"empty segment", "GET", "/v1//models", "", "", 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, s.Handler(), tt.method, tt.path, tt.ctype, tt.body)
			if r.status != tt.status {
				t.Errorf("status = %d, want %d (%s)", r.status, tt.status, r.raw)
			}
			msg, _ := r.body["error"].(string)
			if !strings.Contains(msg, tt.message) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.message)
			}
		})
	}
	if r := do(t, s.Handler(), "POST", predict, "application/json", good); r.status != 200 {
		t.Errorf("a good request after the bad ones: %d %s", r.status, r.raw)
	}
}

func TestMetadataListHealthReady(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	h := s.Handler()
	r := do(t, h, "GET", "/v1/models/trip_duration", "", "")
	if r.status != 200 || r.body["name"] != meta.Name || r.body["inputs"] == nil || r.body["outputs"] == nil {
		t.Errorf("metadata: %d %s", r.status, r.raw)
	}
	// The client's view only: nothing of model.json's files, data or environment.
	for _, hidden := range []string{"files", "data", "examples", "metrics", "environment", "versions", "/"} {
		if _, ok := r.body[hidden]; ok || (hidden == "/" && strings.Contains(r.raw, "/")) {
			t.Errorf("metadata shows %q: %s", hidden, r.raw)
		}
	}
	r = do(t, h, "GET", "/v1/models/trip_duration/versions/1", "", "")
	if r.status != 200 || r.body["version"] != 1.0 {
		t.Errorf("pinned metadata: %d %v", r.status, r.body["version"])
	}
	r = do(t, h, "GET", "/v1/models", "", "")
	if r.raw != `{"models":[{"name":"trip_duration","versions":[1,2],"latest":2}]}`+"\n" {
		t.Errorf("list = %s", r.raw)
	}
	if r = do(t, h, "GET", "/healthz", "", ""); r.status != 200 || r.body["status"] != "ok" {
		t.Errorf("healthz = %d %s", r.status, r.raw)
	}
	if r = do(t, h, "GET", "/readyz", "", ""); r.status != 200 {
		t.Errorf("readyz = %d", r.status)
	}
	s.SetReady(false)
	if r = do(t, h, "GET", "/readyz", "", ""); r.status != 503 || r.body["error"] != "not ready" {
		t.Errorf("readyz while draining = %d %s", r.status, r.raw)
	}
	if r = do(t, h, "GET", "/healthz", "", ""); r.status != 200 {
		t.Errorf("healthz while draining = %d", r.status)
	}
}

func TestMetricsCountRequestsRowsAndErrors(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	h := s.Handler()
	body, want := examples(meta)
	do(t, h, "POST", "/v1/models/trip_duration:predict", "", body)
	do(t, h, "POST", "/v1/models/trip_duration:predict", "", body)
	do(t, h, "POST", "/v1/models/trip_duration:predict", "", `{"instances": []}`)
	do(t, h, "POST", "/v1/models/trip_duration/versions/1:predict", "text/plain", body)
	do(t, h, "POST", "/v1/models/nope:predict", "", body)
	cols, _ := v2Columns(meta)
	do(t, h, "POST", "/v2/models/trip_duration/infer", "", string(mustJSON(map[string]any{"inputs": v2JSONInputs(meta, cols, false)})))
	do(t, h, "POST", "/v2/models/trip_duration/infer", "", `{"inputs": []}`)
	r := do(t, h, "GET", "/metrics", "", "")
	rows := len(want)
	for _, line := range []string{
		`skl2go_inference_request_success_total{model="trip_duration",protocol="v1",version="2"} 2`,
		`skl2go_inference_request_success_total{model="trip_duration",protocol="v2",version="2"} 1`,
		`skl2go_inference_request_failure_total{model="trip_duration",protocol="v1",reason="invalid",version="2"} 1`,
		`skl2go_inference_request_failure_total{model="trip_duration",protocol="v1",reason="unsupported_media_type",version="1"} 1`,
		`skl2go_inference_request_failure_total{model="trip_duration",protocol="v2",reason="invalid",version="2"} 1`,
		`skl2go_inference_count_total{model="trip_duration",protocol="v1",version="2"} ` + itoa(2*rows),
		`skl2go_inference_count_total{model="trip_duration",protocol="v2",version="2"} ` + itoa(rows),
		`skl2go_inference_exec_count_total{model="trip_duration",version="2"} 3`,
		`skl2go_inference_request_duration_seconds_count{model="trip_duration",protocol="v1",version="2"} 2`,
		`skl2go_inference_compute_input_duration_seconds_count{model="trip_duration",version="2"} 3`,
		`skl2go_inference_compute_infer_duration_seconds_count{model="trip_duration",version="2"} 3`,
		`skl2go_inference_compute_output_duration_seconds_count{model="trip_duration",version="2"} 3`,
		`skl2go_http_requests_total{code="404",route="predict"} 1`,
		`skl2go_model_latest_version{model="trip_duration"} 2`,
		`skl2go_model_versions_loaded{model="trip_duration"} 2`,
		`skl2go_model_load_failures_total{model="trip_duration"} 0`,
		`skl2go_model_load_seconds{model="trip_duration"} 0`, // NewStore loads nothing itself
		`skl2go_http_requests_total{code="200",route="v2_infer"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(r.raw, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(r.raw, `model="nope"`) {
		t.Error("an unknown model got a series")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestServeAndShutdownOverRealHTTP(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	ts := httptest.NewUnstartedServer(nil)
	ln := ts.Listener
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	body, _ := examples(meta)
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/models/trip_duration:predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(data), `{"predictions":[`) {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v after Shutdown", err)
	}
}

func TestRequestLogCarriesNginxRequestID(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := skhttp.NewServer(repository.NewStore(), skhttp.Config{}, logger, prometheus.NewRegistry())
	long := strings.Repeat("x", 100)
	for _, tt := range []struct{ sent, logged string }{
		{"9f86d081884c7d659a2feaa0c55ad015", "9f86d081884c7d659a2feaa0c55ad015"},
		{long, long[:64]}, // a direct caller cannot flood the log
		{"", ""},
	} {
		logs.Reset()
		req := httptest.NewRequest("GET", "/healthz", nil)
		if tt.sent != "" {
			req.Header.Set("X-Request-ID", tt.sent)
		}
		s.Handler().ServeHTTP(httptest.NewRecorder(), req)
		var line struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", logs.String(), err)
		}
		if line.Msg != "request" || line.RequestID != tt.logged {
			t.Errorf("sent %q: logged %s", tt.sent, logs.String())
		}
	}
}
