package http_test

import (
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

// serveFixture serves version 1 of the named fixture model through the real
// runtime, after edit (if any) has changed its directory.
func serveFixture(t *testing.T, name string, edit func(dir string)) (*skhttp.Server, *skl2go.Metadata) {
	t.Helper()
	root := t.TempDir()
	dir := fixture.CopyModel(t, models, root, name, 1)
	if edit != nil {
		edit(dir)
	}
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
	s := skhttp.NewServer(store, skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 1000}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	s.SetReady(true)
	return s, m.Metadata()
}

// withoutRanges removes the ranges model.json declares for its inputs.
func withoutRanges(t *testing.T) func(dir string) {
	return func(dir string) {
		fixture.EditMetadata(t, dir, func(m map[string]any) {
			for _, in := range m["inputs"].([]any) {
				delete(in.(map[string]any), "range")
			}
		})
	}
}

func TestClassifierAnswersLabelAndProbabilities(t *testing.T) {
	s, meta := serveFixture(t, fixture.Classifier, nil)
	h := s.Handler()
	instances, want := fixture.ClassExamples(meta)
	body, _ := json.Marshal(map[string]any{"instances": instances})
	r := do(t, h, "POST", "/v1/models/tip_given:predict", "application/json", string(body))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	var got struct {
		Predictions []skl2go.ClassPrediction `json:"predictions"`
		Model       string                   `json:"model"`
		Version     int                      `json:"version"`
	}
	dec := json.NewDecoder(strings.NewReader(r.raw))
	dec.DisallowUnknownFields() // exactly {"label", "probabilities"} per instance
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v: %s", err, r.raw)
	}
	if got.Model != "tip_given" || got.Version != 1 || len(got.Predictions) != len(want) {
		t.Fatalf("answer = %s", r.raw)
	}
	for i, w := range want {
		p := got.Predictions[i]
		if p.Label != w.Label || len(p.Probabilities) != 2 {
			t.Errorf("instance %d: %+v, sklearn %+v", i, p, w)
			continue
		}
		for c := range p.Probabilities {
			if math.Abs(p.Probabilities[c]-w.Probabilities[c]) > skl2go.ProbabilityTolerance {
				t.Errorf("instance %d class %d: %g, sklearn %g", i, c, p.Probabilities[c], w.Probabilities[c])
			}
		}
	}
	if !strings.HasPrefix(r.raw, `{"predictions":[{"label":`) {
		t.Errorf("answer does not start with the label object: %.60s", r.raw)
	}
}

func TestInputsOutsideTheirRangeAreRefused(t *testing.T) {
	for _, name := range []string{fixture.Model, fixture.Classifier} {
		s, meta := serveFixture(t, name, nil)
		h := s.Handler()
		var ex map[string]any
		json.Unmarshal(meta.Examples[0].Instance, &ex)
		for _, distance := range []string{"1000.01", "1e30", "3.4e38", "-1"} {
			ex["trip_distance"] = json.RawMessage(distance)
			body, _ := json.Marshal(map[string]any{"instances": []any{ex}})
			r := do(t, h, "POST", "/v1/models/"+name+":predict", "application/json", string(body))
			msg, _ := r.body["error"].(string)
			if r.status != 400 || msg != "instances[0].trip_distance: "+distance+" is out of range: the model accepts 0 to 1000" {
				t.Errorf("%s, trip_distance %s: %d %s", name, distance, r.status, r.raw)
			}
		}
		ex["trip_distance"] = json.RawMessage("1000")
		body, _ := json.Marshal(map[string]any{"instances": []any{ex}})
		if r := do(t, h, "POST", "/v1/models/"+name+":predict", "application/json", string(body)); r.status != 200 {
			t.Errorf("%s, trip_distance at the top of its range: %d %s", name, r.status, r.raw)
		}
	}
}

// Without a declared range, a distance near float32's limit overflows the
// linear model's float32 arithmetic: a 400 naming the output element, not a 500.
func TestNonFiniteOutputIsAClientError(t *testing.T) {
	s, meta := serveFixture(t, fixture.Model, withoutRanges(t))
	var ex map[string]any
	json.Unmarshal(meta.Examples[0].Instance, &ex)
	huge := map[string]any{}
	for k, v := range ex {
		huge[k] = v
	}
	huge["trip_distance"] = 3.4e38
	body, _ := json.Marshal(map[string]any{"instances": []any{ex, huge}})
	r := do(t, s.Handler(), "POST", "/v1/models/trip_duration:predict", "application/json", string(body))
	msg, _ := r.body["error"].(string)
	if r.status != 400 || !strings.HasPrefix(msg, `output "variable", element 1: the model produced +Inf, which JSON cannot carry`) {
		t.Errorf("%d %s", r.status, r.raw)
	}
}

// TF Serving's columnar form, {"inputs": {column: [values]}}, answered
// {"outputs": …}: a regressor's values, a classifier's label and
// probabilities columns, each as sklearn predicted them.
func TestPredictColumnsMatchSklearn(t *testing.T) {
	columns := func(meta *skl2go.Metadata, instances []json.RawMessage) string {
		cols := map[string][]json.RawMessage{}
		for _, raw := range instances {
			var row map[string]json.RawMessage
			json.Unmarshal(raw, &row)
			for _, in := range meta.Inputs {
				cols[in.Name] = append(cols[in.Name], row[in.Name])
			}
		}
		body, _ := json.Marshal(map[string]any{"inputs": cols})
		return string(body)
	}

	s, meta := serveFixture(t, fixture.Model, nil)
	instances, want := fixture.Examples(meta)
	r := do(t, s.Handler(), "POST", "/v1/models/trip_duration:predict", "application/json", columns(meta, instances))
	var regression struct {
		Outputs []float64 `json:"outputs"`
		Model   string    `json:"model"`
		Version int       `json:"version"`
	}
	dec := json.NewDecoder(strings.NewReader(r.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&regression); r.status != 200 || err != nil || len(regression.Outputs) != len(want) || regression.Model != "trip_duration" || regression.Version != 1 {
		t.Fatalf("regressor: %d %s (%v)", r.status, r.raw, err)
	}
	for i, got := range regression.Outputs {
		if !skl2go.WithinTolerance(got, want[i]) {
			t.Errorf("regressor row %d: %g, sklearn %g", i, got, want[i])
		}
	}

	s, meta = serveFixture(t, fixture.Classifier, nil)
	instances, classes := fixture.ClassExamples(meta)
	r = do(t, s.Handler(), "POST", "/v1/models/tip_given:predict", "application/json", columns(meta, instances))
	var classification struct {
		Outputs struct {
			Label         []int64     `json:"label"`
			Probabilities [][]float64 `json:"probabilities"`
		} `json:"outputs"`
		Model   string `json:"model"`
		Version int    `json:"version"`
	}
	dec = json.NewDecoder(strings.NewReader(r.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&classification); r.status != 200 || err != nil || len(classification.Outputs.Label) != len(classes) ||
		len(classification.Outputs.Probabilities) != len(classes) || classification.Model != "tip_given" {
		t.Fatalf("classifier: %d %s (%v)", r.status, r.raw, err)
	}
	for i, w := range classes {
		got := classification.Outputs.Probabilities[i]
		if classification.Outputs.Label[i] != w.Label || len(got) != len(w.Probabilities) {
			t.Errorf("classifier row %d: label %d %v, sklearn %+v", i, classification.Outputs.Label[i], got, w)
			continue
		}
		for c := range got {
			if math.Abs(got[c]-w.Probabilities[c]) > skl2go.ProbabilityTolerance {
				t.Errorf("classifier row %d class %d: %g, sklearn %g", i, c, got[c], w.Probabilities[c])
			}
		}
	}
}
