package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

func parseExperiment(t testing.TB, doc string) *skl2go.Experiment {
	t.Helper()
	return parseExperimentOn(t, fixture.Model, doc)
}

func parseExperimentOn(t testing.TB, model, doc string) *skl2go.Experiment {
	t.Helper()
	e, err := skl2go.ParseExperiment([]byte(doc), model)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// experimentServer serves versions 1 and 2 (wrap, if set, wraps version 2)
// under the experiment.
func experimentServer(t testing.TB, doc string, config skhttp.Config, wrap func(skl2go.Model) skl2go.Model) (*skhttp.Server, *skl2go.Metadata) {
	t.Helper()
	return experimentServerOn(t, fixture.Model, doc, config, wrap)
}

func experimentServerOn(t testing.TB, name, doc string, config skhttp.Config, wrap func(skl2go.Model) skl2go.Model) (*skhttp.Server, *skl2go.Metadata) {
	t.Helper()
	root := t.TempDir()
	var loaded []skl2go.Model
	for _, v := range []int{1, 2} {
		fixture.CopyModel(t, models, root, name, v)
		entry, err := repository.Read(root, name, v)
		if err != nil {
			t.Fatal(err)
		}
		var m skl2go.Model
		m, err = runtime.Load(entry.Dir, entry.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		if v == 2 && wrap != nil {
			m = wrap(m)
		}
		loaded = append(loaded, m)
	}
	store := repository.NewStore(loaded...)
	if config.MaxBodyBytes == 0 {
		config.MaxBodyBytes, config.MaxRows = 1<<20, 1000
	}
	s := skhttp.NewServer(fixture.ExperimentStore{Store: store, E: parseExperimentOn(t, name, doc)}, config, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	t.Cleanup(func() { s.Shutdown(context.Background()); store.Close() })
	s.SetReady(true)
	return s, loaded[0].Metadata()
}

const halves = `{"id":"halves","sticky":"X-User","variants":[{"name":"control","version":1,"weight":50},{"name":"challenger","version":2,"weight":50}]}`

func post(t testing.TB, h http.Handler, path, body string, headers map[string]string) response {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	json.Unmarshal(rec.Body.Bytes(), &r.body)
	return r
}

// TestExperimentAnswers: an unpinned request is answered by its key's
// variant, named in the headers and the body (v1 field, V2 parameter); a
// pinned version bypasses the experiment.
func TestExperimentAnswers(t *testing.T) {
	s, meta := experimentServer(t, halves, skhttp.Config{}, nil)
	e := parseExperiment(t, halves)
	body, _ := examples(meta)
	cols, _ := v2Columns(meta)
	v2Body := string(mustJSON(map[string]any{"inputs": v2JSONInputs(meta, cols, false)}))
	seen := map[string]bool{}
	for i := range 40 {
		key := fmt.Sprintf("request-%d", i)
		want := e.Assign(key)
		for _, tt := range []struct{ path, body, field string }{
			{"/v1/models/trip_duration:predict", body, `"variant":"` + want.Name + `"}`},
			{"/v2/models/trip_duration/infer", v2Body, `"parameters":{"variant":"` + want.Name + `"}`},
		} {
			r := post(t, s.Handler(), tt.path, tt.body, map[string]string{"X-Request-Id": key})
			if r.status != 200 {
				t.Fatalf("%s: %d %s", tt.path, r.status, r.raw)
			}
			if got := r.header.Get("X-Skl2go-Variant"); got != want.Name {
				t.Errorf("%s key %s: variant %q, want %q", tt.path, key, got, want.Name)
			}
			if got := r.header.Get("X-Skl2go-Version"); got != strconv.Itoa(want.Version) {
				t.Errorf("%s key %s: version %q, want %d", tt.path, key, got, want.Version)
			}
			if r.header.Get("X-Skl2go-Experiment") != "halves" || r.header.Get("X-Skl2go-Model") != fixture.Model {
				t.Errorf("%s: headers %v", tt.path, r.header)
			}
			if !strings.Contains(r.raw, tt.field) {
				t.Errorf("%s: answer %s lacks %s", tt.path, r.raw, tt.field)
			}
		}
		seen[want.Name] = true
	}
	if !seen["control"] || !seen["challenger"] {
		t.Fatalf("40 keys met only %v", seen)
	}
	// The sticky header wins over the request id.
	for i := range 10 {
		user := fmt.Sprintf("user-%d", i)
		r := post(t, s.Handler(), "/v1/models/trip_duration:predict", body, map[string]string{"X-User": user, "X-Request-Id": fmt.Sprint(i)})
		if got := r.header.Get("X-Skl2go-Variant"); got != e.Assign(user).Name {
			t.Errorf("user %s: variant %q, want %q", user, got, e.Assign(user).Name)
		}
	}
	for _, path := range []string{"/v1/models/trip_duration/versions/1:predict", "/v2/models/trip_duration/versions/1/infer"} {
		b := body
		if strings.HasPrefix(path, "/v2") {
			b = v2Body
		}
		r := post(t, s.Handler(), path, b, map[string]string{"X-Request-Id": "request-1"})
		if r.status != 200 || r.header.Get("X-Skl2go-Variant") != "" || r.header.Get("X-Skl2go-Version") != "1" || strings.Contains(r.raw, "variant") {
			t.Errorf("%s: a pinned version must bypass the experiment: %d %v %s", path, r.status, r.header, r.raw)
		}
	}
	metrics := scrape(t, s)
	for _, series := range []string{`skl2go_experiment_requests_total{experiment="halves",model="trip_duration",variant="control"}`,
		`skl2go_experiment_rows_total{experiment="halves",model="trip_duration",variant="challenger"}`} {
		if metricValue(metrics, series) <= 0 {
			t.Errorf("%s missing from /metrics", series)
		}
	}
}

// TestExperimentSameKeySameVariantOnEveryReplica: two servers (replicas)
// give every key the same variant.
func TestExperimentSameKeySameVariantOnEveryReplica(t *testing.T) {
	a, meta := experimentServer(t, halves, skhttp.Config{}, nil)
	b, _ := experimentServer(t, halves, skhttp.Config{}, nil)
	body, _ := examples(meta)
	for i := range 30 {
		h := map[string]string{"X-User": fmt.Sprintf("u%d", i)}
		va := post(t, a.Handler(), "/v1/models/trip_duration:predict", body, h).header.Get("X-Skl2go-Variant")
		vb := post(t, b.Handler(), "/v1/models/trip_duration:predict", body, h).header.Get("X-Skl2go-Variant")
		if va == "" || va != vb {
			t.Fatalf("user u%d: replica a says %q, b says %q", i, va, vb)
		}
	}
}

// gated is a model whose Predict waits for its gate: a mirror that
// cannot keep up.
type gated struct {
	skl2go.Model
	gate chan struct{}
}

func (m gated) Predict(ctx context.Context, b *skl2go.Batch) ([]skl2go.Output, error) {
	select {
	case <-m.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return m.Model.Predict(ctx, b)
}

// TestShadowDropsWhenFullNeverBlocking: with the mirror stuck, every
// request is still answered (by control, unchanged), and the mirror runs
// beyond the queue are dropped and counted; once the mirror moves, it
// agrees with control (same model) and no answer changed.
func TestShadowDropsWhenFullNeverBlocking(t *testing.T) {
	gate := make(chan struct{})
	doc := `{"id":"shadowed","variants":[{"name":"control","version":1,"weight":1}],"mirror":{"name":"shadow","version":2}}`
	s, meta := experimentServer(t, doc, skhttp.Config{ShadowQueue: 2}, func(m skl2go.Model) skl2go.Model { return gated{m, gate} })
	body, want := examples(meta)
	const n = 20
	for i := range n {
		r := post(t, s.Handler(), "/v1/models/trip_duration:predict", body, map[string]string{"X-Request-Id": strconv.Itoa(i)})
		if r.status != 200 || r.header.Get("X-Skl2go-Variant") != "control" || r.header.Get("X-Skl2go-Version") != "1" {
			t.Fatalf("request %d: %d %v %s", i, r.status, r.header, r.raw)
		}
		for j, p := range decodePredictions(t, r.raw) {
			if !skl2go.WithinTolerance(p, want[j]) {
				t.Fatalf("request %d row %d: %v, want %v", i, j, p, want[j])
			}
		}
	}
	// At most one run waits in the mirror and two in the queue.
	if dropped := metricValue(scrape(t, s), `skl2go_shadow_dropped_total{model="trip_duration"}`); dropped < n-3 {
		t.Fatalf("dropped %v mirror runs, want at least %d", dropped, n-3)
	}
	close(gate)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, s)
		ok := metricValue(m, `skl2go_shadow_runs_total{model="trip_duration",outcome="ok",variant="shadow"}`)
		if ok >= 2 {
			if c := metricValue(m, `skl2go_shadow_abs_diff_count{model="trip_duration",variant="shadow"}`); c < ok {
				t.Fatalf("abs diff observed %v times for %v runs", c, ok)
			}
			if sum := metricValue(m, `skl2go_shadow_abs_diff_sum{model="trip_duration",variant="shadow"}`); sum > 1e-4 {
				t.Fatalf("the same model as mirror differs by %v", sum)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror runs ok: %v after the gate opened", ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var predictionsRE = regexp.MustCompile(`"predictions":\[([^\]]*)\]`)

func decodePredictions(t testing.TB, raw string) []float64 {
	t.Helper()
	m := predictionsRE.FindStringSubmatch(raw)
	if m == nil {
		t.Fatalf("no predictions in %s", raw)
	}
	var out []float64
	for _, f := range strings.Split(m[1], ",") {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

var scrapeMu sync.Mutex

func scrape(t testing.TB, s *skhttp.Server) string {
	t.Helper()
	scrapeMu.Lock()
	defer scrapeMu.Unlock()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// metricValue returns a series' value in Prometheus text, 0 if absent.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

// TestShadowClassifierAgreement: a classifier's mirror (the same model)
// agrees with the answer on every row.
func TestShadowClassifierAgreement(t *testing.T) {
	doc := `{"id":"tips","variants":[{"name":"control","version":1,"weight":1}],"mirror":{"name":"shadow","version":2}}`
	s, meta := experimentServerOn(t, fixture.Classifier, doc, skhttp.Config{}, nil)
	instances, _ := fixture.ClassExamples(meta)
	body := string(mustJSON(map[string]any{"instances": instances}))
	r := post(t, s.Handler(), "/v1/models/tip_given:predict", body, nil)
	if r.status != 200 || r.header.Get("X-Skl2go-Variant") != "control" {
		t.Fatalf("%d %v %s", r.status, r.header, r.raw)
	}
	agree := `skl2go_shadow_label_agreement_total{agree="true",model="tip_given",variant="shadow"}`
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(scrape(t, s), agree) < float64(len(instances)) {
		if time.Now().After(deadline) {
			t.Fatalf("agreement %v rows, want %d:\n%s", metricValue(scrape(t, s), agree), len(instances), scrape(t, s))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if differ := metricValue(scrape(t, s), strings.Replace(agree, `"true"`, `"false"`, 1)); differ != 0 {
		t.Fatalf("%v rows disagree", differ)
	}
}

// TestExperimentVersionGoneFallsBackToLatest: a variant whose version is
// not loaded (a reload between the lookups) is answered by the latest
// version, without a variant, never with an error.
func TestExperimentVersionGoneFallsBackToLatest(t *testing.T) {
	s, meta := experimentServer(t, `{"id":"gone","variants":[{"name":"ghost","version":5,"weight":1}]}`, skhttp.Config{}, nil)
	body, _ := examples(meta)
	r := post(t, s.Handler(), "/v1/models/trip_duration:predict", body, nil)
	if r.status != 200 || r.header.Get("X-Skl2go-Version") != "2" || r.header.Get("X-Skl2go-Variant") != "" || strings.Contains(r.raw, "variant") {
		t.Fatalf("%d %v %s", r.status, r.header, r.raw)
	}
}

// TestExperimentInInferenceLog: a logged answer names its variant, the
// request id is the assignment key (no sticky header), and the mirror's run
// of the same rows is logged as a shadow record with the mirror's variant.
func TestExperimentInInferenceLog(t *testing.T) {
	doc := `{"id":"logged","variants":[{"name":"control","version":1,"weight":1}],"mirror":{"name":"shadow","version":2}}`
	log := &fixture.MemoryLog{}
	s, meta := experimentServer(t, doc, skhttp.Config{InferenceLog: log, InferenceLogRate: 1}, nil)
	instances, _ := fixture.Examples(meta)
	body := string(mustJSON(map[string]any{"instances": instances}))
	r := post(t, s.Handler(), "/v1/models/trip_duration:predict", body, map[string]string{"X-Request-Id": "trip-42"})
	if r.status != 200 || r.header.Get("X-Request-Id") != "trip-42" {
		t.Fatalf("%d %v %s", r.status, r.header, r.raw)
	}
	byType := log.ByType(t, skl2go.InferenceEventType, skl2go.ShadowEventType)
	answer, mirror := byType[skl2go.InferenceEventType], byType[skl2go.ShadowEventType]
	for _, tt := range []struct {
		rec              *skl2go.InferenceRecord
		variant          string
		version, outputs int
	}{{answer, "control", 1, len(instances)}, {mirror, "shadow", 2, len(instances)}} {
		if tt.rec.RequestID != "trip-42" || tt.rec.Variant != tt.variant || tt.rec.Version != tt.version {
			t.Errorf("%s: request %q variant %q version %d, want trip-42 %s %d", tt.rec.Type,
				tt.rec.RequestID, tt.rec.Variant, tt.rec.Version, tt.variant, tt.version)
		}
		if got := len(tt.rec.Outputs[0].Float64s()); got != tt.outputs {
			t.Errorf("%s: %d predictions, want %d", tt.rec.Type, got, tt.outputs)
		}
	}
}
