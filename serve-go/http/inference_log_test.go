package http_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/inferencelog"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

// serveLogged serves version 1 of a fixture model with config (its limits
// defaulted), logging into config.InferenceLog.
func serveLogged(t *testing.T, name string, config skhttp.Config, logs *bytes.Buffer) (*skhttp.Server, *skl2go.Metadata) {
	t.Helper()
	root := t.TempDir()
	fixture.CopyModel(t, models, root, name, 1)
	entry, err := repository.Read(root, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := runtime.Load(entry.Dir, entry.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	store := repository.NewStore(m)
	t.Cleanup(func() { store.Close() })
	config.MaxBodyBytes, config.MaxRows = 8<<20, 1000
	logger := slog.New(slog.DiscardHandler)
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := skhttp.NewServer(store, config, logger, prometheus.NewRegistry())
	s.SetReady(true)
	return s, m.Metadata()
}

func postBytes(t *testing.T, s *skhttp.Server, path string, body []byte, headers map[string]string) response {
	t.Helper()
	return post(t, s.Handler(), path, string(body), headers)
}

// instanceColumns is the examples' instances as columns (JSON numbers).
func instanceColumns(meta *skl2go.Metadata, instances []json.RawMessage) map[string][]float64 {
	cols := map[string][]float64{}
	for _, raw := range instances {
		var row map[string]float64
		json.Unmarshal(raw, &row)
		for _, in := range meta.Inputs {
			cols[in.Name] = append(cols[in.Name], row[in.Name])
		}
	}
	return cols
}

// columnFloats reads a logged column as float64s.
func columnFloats(c skl2go.Column) []float64 {
	switch c.Type {
	case skl2go.Int64:
		out := make([]float64, len(c.Int64))
		for i, v := range c.Int64 {
			out[i] = float64(v)
		}
		return out
	}
	o := skl2go.Output{Type: c.Type, Values: c.Values}
	return o.Float64s()
}

func TestInferenceLogSamplesAnsweredInferences(t *testing.T) {
	tests := []struct {
		name     string
		model    string
		rate     float64
		protocol string
		want     int // records for 5 requests
	}{
		{"rate 0 writes nothing", fixture.Model, 0, "v1", 0},
		{"rate 1, v1, regressor", fixture.Model, 1, "v1", 5},
		{"rate 1, V2, regressor", fixture.Model, 1, "v2", 5},
		{"rate 1, v1, classifier", fixture.Classifier, 1, "v1", 5},
		{"rate 1, V2, classifier", fixture.Classifier, 1, "v2", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &fixture.MemoryLog{}
			s, meta := serveLogged(t, tt.model, skhttp.Config{InferenceLog: log, InferenceLogRate: tt.rate}, nil)
			instances, _ := fixture.Examples(meta)
			cols := instanceColumns(meta, instances)
			var path string
			var body []byte
			if tt.protocol == "v1" {
				path, body = "/v1/models/"+tt.model+":predict", mustJSON(map[string]any{"instances": instances})
			} else {
				path, body = "/v2/models/"+tt.model+"/infer", mustJSON(map[string]any{"inputs": v2JSONInputs(meta, cols, false)})
			}
			answers := map[string]response{}
			for i := range 5 {
				id := fmt.Sprintf("req-%d", i)
				r := postBytes(t, s, path, body, map[string]string{"X-Request-Id": id})
				if r.status != 200 || r.header.Get("X-Request-Id") != id {
					t.Fatalf("status %d, X-Request-Id %q: %s", r.status, r.header.Get("X-Request-Id"), r.raw)
				}
				answers[id] = r
			}
			// a refused request is never logged
			if r := postBytes(t, s, path, []byte(`{"instances": [{}]}`), nil); r.status != 400 {
				t.Fatalf("bad request: status %d", r.status)
			}
			recs := log.Records()
			if len(recs) != tt.want {
				t.Fatalf("%d records, want %d", len(recs), tt.want)
			}
			for _, rec := range recs {
				answer, ok := answers[rec.RequestID]
				if !ok {
					t.Fatalf("record for request %q, not sent", rec.RequestID)
				}
				if rec.Type != skl2go.InferenceEventType || rec.Model != tt.model || rec.Version != 1 || rec.Task != meta.Task ||
					rec.Latency <= 0 || rec.Time.IsZero() || rec.Variant != "" {
					t.Errorf("record %+v", rec)
				}
				if len(rec.Inputs) != len(meta.Inputs) {
					t.Fatalf("%d input columns, want %d", len(rec.Inputs), len(meta.Inputs))
				}
				for i, c := range rec.Inputs {
					got, sent := columnFloats(c), cols[c.Name]
					same := c.Name == meta.Inputs[i].Name && len(got) == len(sent)
					for j := 0; same && j < len(got); j++ {
						same = float32(got[j]) == float32(sent[j]) // float32 inputs hold the sent value rounded
					}
					if !same {
						t.Errorf("input %s = %v, sent %v", c.Name, got, sent)
					}
				}
				checkLoggedOutputs(t, tt.protocol, meta, rec, answer)
			}
		})
	}
}

// checkLoggedOutputs compares a record's outputs with the answer the client got.
func checkLoggedOutputs(t *testing.T, protocol string, meta *skl2go.Metadata, rec *skl2go.InferenceRecord, answer response) {
	t.Helper()
	got := map[string][]float64{}
	for i := range rec.Outputs {
		got[rec.Outputs[i].Name] = rec.Outputs[i].Float64s()
	}
	want := map[string][]float64{}
	if protocol == "v2" {
		for _, out := range answer.body["outputs"].([]any) {
			o := out.(map[string]any)
			for _, v := range o["data"].([]any) {
				want[o["name"].(string)] = append(want[o["name"].(string)], v.(float64))
			}
		}
	} else {
		for _, p := range answer.body["predictions"].([]any) {
			switch p := p.(type) {
			case float64:
				want[meta.Outputs[0].Name] = append(want[meta.Outputs[0].Name], p)
			case map[string]any:
				want[skl2go.LabelOutput] = append(want[skl2go.LabelOutput], p[skl2go.LabelOutput].(float64))
				for _, q := range p[skl2go.ProbabilitiesOutput].([]any) {
					want[skl2go.ProbabilitiesOutput] = append(want[skl2go.ProbabilitiesOutput], q.(float64))
				}
			}
		}
	}
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Fatalf("output %s: %d values logged, %d answered", name, len(g), len(w))
		}
		for i := range w {
			if !skl2go.WithinTolerance(g[i], w[i]) {
				t.Errorf("output %s[%d]: logged %v, answered %v", name, i, g[i], w[i])
			}
		}
	}
	if len(want) != len(meta.Outputs) {
		t.Errorf("answer outputs %v, model outputs %s", want, meta.OutputNames())
	}
}

func TestRequestIDIsCheckedEchoedOrMade(t *testing.T) {
	log := &fixture.MemoryLog{}
	s, meta := serveLogged(t, fixture.Model, skhttp.Config{InferenceLog: log, InferenceLogRate: 1}, nil)
	instances, _ := fixture.Examples(meta)
	v1 := mustJSON(map[string]any{"instances": instances[:1]})
	v2 := mustJSON(map[string]any{"inputs": v2JSONInputs(meta, instanceColumns(meta, instances[:1]), false)})
	tests := []struct {
		name   string
		id     string
		status int
		echo   string // "" with 200: a new id
	}{
		{"sent: echoed", "abc-123_!~", 200, "abc-123_!~"},
		{"128 characters", strings.Repeat("x", 128), 200, strings.Repeat("x", 128)},
		{"none: made", "", 200, ""},
		{"too long", strings.Repeat("x", 129), 400, ""},
		{"not printable ASCII", "caf\u00e9", 400, ""},
		{"a control character", "a\x01b", 400, ""},
	}
	for _, tt := range tests {
		for _, call := range []struct{ path, body string }{
			{"/v1/models/trip_duration:predict", string(v1)}, {"/v2/models/trip_duration/infer", string(v2)},
		} {
			t.Run(tt.name+" "+call.path, func(t *testing.T) {
				headers := map[string]string{}
				if tt.id != "" {
					headers["X-Request-Id"] = tt.id
				}
				before := len(log.Records())
				r := postBytes(t, s, call.path, []byte(call.body), headers)
				if r.status != tt.status {
					t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
				}
				if tt.status == 400 {
					if msg, _ := r.body["error"].(string); !strings.Contains(msg, "header X-Request-Id must be 1 to 128 printable ASCII characters") {
						t.Errorf("error %q does not name the header", msg)
					}
					return
				}
				got := r.header.Get("X-Request-Id")
				if tt.echo != "" && got != tt.echo {
					t.Errorf("X-Request-Id %q, want %q", got, tt.echo)
				}
				if tt.echo == "" && !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
					t.Errorf("made X-Request-Id %q, want 32 hex digits", got)
				}
				recs := log.Records()
				if len(recs) != before+1 || recs[len(recs)-1].RequestID != got {
					t.Errorf("record's request id is not the answer's %q", got)
				}
			})
		}
	}
}

// token is the actuals bearer token of these tests, made for each run.
var token = rand.Text()

func TestActualsEndpoint(t *testing.T) {
	many := `{"actuals": [` + strings.Repeat(`{"key": "k", "actual": 1},`, skhttp.MaxActuals) + `{"key": "k", "actual": 1}]}`
	const path = "/v1/models/trip_duration/actuals"
	bearer := map[string]string{"Authorization": "Bearer " + token, "X-Request-Id": "post-1"}
	tests := []struct {
		name    string
		token   string // configured
		path    string
		headers map[string]string
		body    string
		status  int
		message string
	}{
		{"no token configured: off", "", path, bearer, `{"actuals": [{"key": "k", "actual": 1}]}`, 403, "takes no ground truth: start it with --inference-log and --actuals-token-file"},
		{"no Authorization", token, path, nil, `{"actuals": [{"key": "k", "actual": 1}]}`, 401, `send "Authorization: Bearer <token>"`},
		{"not a bearer token", token, path, map[string]string{"Authorization": "Basic " + token}, `{"actuals": [{"key": "k", "actual": 1}]}`, 401, `send "Authorization: Bearer <token>"`},
		{"wrong token", token, path, map[string]string{"Authorization": "Bearer " + token + "x"}, `{"actuals": [{"key": "k", "actual": 1}]}`, 401, "wrong actuals token"},
		{"not JSON", token, path, bearer, `actuals`, 400, `body must be a JSON object {"actuals": [...]}`},
		{"no actuals", token, path, bearer, `{}`, 400, "actuals: missing"},
		{"unknown top field", token, path, bearer, `{"actuals": [], "x": 1}`, 400, `"x": unknown field`},
		{"empty", token, path, bearer, `{"actuals": []}`, 400, "actuals: must contain at least one record"},
		{"not a list", token, path, bearer, `{"actuals": {}}`, 400, "actuals: must be a list of records"},
		{"over the limit", token, path, bearer, many, 413, "actuals: at most 10000 records per request, got 10001"},
		{"no id nor key", token, path, bearer, `{"actuals": [{"key": "k", "actual": 1}, {"row": 0, "actual": 1}]}`, 400, "actuals[1].request_id: missing"},
		{"id not a string", token, path, bearer, `{"actuals": [{"request_id": 7, "actual": 1}]}`, 400, "actuals[0].request_id: must be a string"},
		{"key too long", token, path, bearer, `{"actuals": [{"key": "` + strings.Repeat("k", 129) + `", "actual": 1}]}`, 400, "actuals[0].key: must be 1 to 128 printable ASCII characters"},
		{"negative row", token, path, bearer, `{"actuals": [{"request_id": "r", "row": -1, "actual": 1}]}`, 400, "actuals[0].row: must be an integer of at least 0, got -1"},
		{"fractional row", token, path, bearer, `{"actuals": [{"request_id": "r", "row": 1.5, "actual": 1}]}`, 400, "actuals[0].row: must be an integer of at least 0, got 1.5"},
		{"no actual", token, path, bearer, `{"actuals": [{"request_id": "r", "row": 0}]}`, 400, "actuals[0].actual: missing"},
		{"actual a string", token, path, bearer, `{"actuals": [{"request_id": "r", "actual": "12"}]}`, 400, `actuals[0].actual: must be a finite number, got "12"`},
		{"actual overflows", token, path, bearer, `{"actuals": [{"request_id": "r", "actual": 1e999}]}`, 400, "actuals[0].actual: must be a finite number, got 1e999"},
		{"unknown field", token, path, bearer, `{"actuals": [{"request_id": "r", "actual": 1, "tip": 2}]}`, 400, "actuals[0].tip: unknown field"},
		{"bad model name", token, "/v1/models/a..b/actuals", bearer, `{"actuals": [{"key": "k", "actual": 1}]}`, 400, "invalid model name"},
		{"accepted", token, path, bearer, `{"actuals": [{"request_id": "req-1", "row": 1, "actual": 12.5}, {"key": "trip-9", "actual": 0}]}`, 200, ""},
		{"accepted, a version pinned", token, "/v1/models/trip_duration/versions/1/actuals", bearer, `{"actuals": [{"request_id": "req-1", "actual": 3}]}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &fixture.MemoryLog{}
			var logs bytes.Buffer
			s, _ := serveLogged(t, fixture.Model, skhttp.Config{InferenceLog: log, ActualsToken: tt.token}, &logs)
			r := postBytes(t, s, tt.path, []byte(tt.body), tt.headers)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if strings.Contains(logs.String(), token) || strings.Contains(r.raw, token) {
				t.Error("the token appears in a log line or the answer")
			}
			if tt.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
			if tt.status != 200 {
				if msg, _ := r.body["error"].(string); !strings.Contains(msg, tt.message) {
					t.Errorf("error %q, want it to contain %q", msg, tt.message)
				}
				if len(log.Records()) != 0 {
					t.Error("a refused request was logged")
				}
				return
			}
			var body struct{ Accepted int }
			json.Unmarshal([]byte(r.raw), &body)
			recs := log.Records()
			if len(recs) != 1 || body.Accepted != len(recs[0].Actuals) || recs[0].Type != skl2go.ActualEventType || recs[0].Model != "trip_duration" {
				t.Fatalf("answer %s, records %+v", r.raw, recs)
			}
			if strings.Contains(tt.path, "versions/1") != (recs[0].Version == 1) {
				t.Errorf("version %d for %s", recs[0].Version, tt.path)
			}
			if tt.name == "accepted" {
				want := []skl2go.Actual{{RequestID: "req-1", Row: 1, Value: 12.5}, {Key: "trip-9", Value: 0}}
				if fmt.Sprint(recs[0].Actuals) != fmt.Sprint(want) {
					t.Errorf("actuals %+v, want %+v", recs[0].Actuals, want)
				}
			}
		})
	}
}

func TestActualsAreRateLimitedAndNeverLost(t *testing.T) {
	log := &fixture.MemoryLog{}
	s, _ := serveLogged(t, fixture.Model, skhttp.Config{InferenceLog: log, ActualsToken: token, ActualsRate: 1}, nil)
	body := []byte(`{"actuals": [{"key": "k", "actual": 1}]}`)
	auth := map[string]string{"Authorization": "Bearer " + token}
	var statuses []int
	for range 3 { // a burst of twice the rate, then 429
		statuses = append(statuses, postBytes(t, s, "/v1/models/trip_duration/actuals", body, auth).status)
	}
	if fmt.Sprint(statuses) != "[200 200 429]" {
		t.Errorf("statuses %v, want [200 200 429]", statuses)
	}
	log.SetFull(true)
	s, _ = serveLogged(t, fixture.Model, skhttp.Config{InferenceLog: log, ActualsToken: token}, nil)
	r := postBytes(t, s, "/v1/models/trip_duration/actuals", body, auth)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("a full log: status %d (Retry-After %q), want 503: the client must know to send again", r.status, r.header.Get("Retry-After"))
	}
}

// The real sink behind the server: what a request answered is on disk, and
// the metrics count it.
func TestInferenceLogThroughTheFileSink(t *testing.T) {
	dir := t.TempDir() + "/replica-7"
	sink, err := inferencelog.Open(inferencelog.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, meta := serveLogged(t, fixture.Classifier, skhttp.Config{InferenceLog: sink, InferenceLogRate: 1, ActualsToken: token}, nil)
	instances, _ := fixture.Examples(meta)
	r := postBytes(t, s, "/v1/models/tip_given:predict", mustJSON(map[string]any{"instances": instances[:2]}), map[string]string{"X-Request-Id": "r-1"})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	postBytes(t, s, "/v1/models/tip_given/actuals", []byte(`{"actuals": [{"request_id": "r-1", "row": 1, "actual": 1}]}`),
		map[string]string{"Authorization": "Bearer " + token})
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := inferencelog.Files(dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	data, _ := os.ReadFile(files[0])
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), data)
	}
	var inf, actual struct {
		Type, Source, RequestID, Model string
		Version                        int
		Data                           struct {
			Inputs  map[string][]any
			Outputs struct {
				Predictions   []float64
				Probabilities [][]float64
			}
			RequestID *string
			Row       int
			Actual    float64
		}
	}
	json.Unmarshal([]byte(lines[0]), &inf)
	json.Unmarshal([]byte(lines[1]), &actual)
	answer := r.body["predictions"].([]any)
	if inf.Type != "org.skl2go.inference" || inf.Source != "skl2go/replica-7" || inf.RequestID != "r-1" || inf.Model != "tip_given" ||
		inf.Version != 1 || len(inf.Data.Inputs) != len(meta.Inputs) || len(inf.Data.Outputs.Predictions) != 2 ||
		len(inf.Data.Outputs.Probabilities) != 2 || len(inf.Data.Outputs.Probabilities[0]) != len(meta.Classes) ||
		inf.Data.Outputs.Predictions[1] != answer[1].(map[string]any)["label"].(float64) {
		t.Errorf("inference record %s", lines[0])
	}
	if actual.Type != "org.skl2go.actual" || actual.RequestID != "r-1" || actual.Data.RequestID == nil || *actual.Data.RequestID != "r-1" ||
		actual.Data.Row != 1 || actual.Data.Actual != 1 || actual.Model != "tip_given" {
		t.Errorf("actual record %s", lines[1])
	}
	metrics := do(t, s.Handler(), "GET", "/metrics", "", "")
	for _, want := range []string{"skl2go_inference_log_written_total 2", `skl2go_inference_log_dropped_total{reason="queue_full"} 0`} {
		if !strings.Contains(metrics.raw, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestActualsWithAPIKeys: with API keys on, the key (forwarded by nginx for
// this endpoint only) is the credential, judged by the same key file as the
// edge; the actuals token is not needed.
func TestActualsWithAPIKeys(t *testing.T) {
	const path = "/v1/models/trip_duration/actuals"
	body := []byte(`{"actuals": [{"request_id": "r1", "row": 0, "actual": 12.5}]}`)
	tests := []struct {
		name          string
		authorization string
		status        int
	}{
		{"a key whose scope covers it", "Bearer good", 200},
		{"an unknown key", "Bearer bad", 401},
		{"no key", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &fixture.MemoryLog{}
			s, _ := serveLogged(t, fixture.Model, skhttp.Config{InferenceLog: log, Keys: keys{}}, nil)
			headers := map[string]string{}
			if tt.authorization != "" {
				headers["Authorization"] = tt.authorization
			}
			r := postBytes(t, s, path, body, headers)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if got, want := len(log.Records()), map[bool]int{true: 1, false: 0}[tt.status == 200]; got != want {
				t.Errorf("%d records logged, want %d", got, want)
			}
		})
	}
}
