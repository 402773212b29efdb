package skl2go_test

import (
	"strings"
	"testing"

	"skl2go"
	"skl2go/internal/wiretest"
)

const testMetadata = wiretest.Trips

func testMeta(t testing.TB) *skl2go.Metadata { return wiretest.Parse(t, testMetadata) }

func TestParseMetadataRefusesBadDocuments(t *testing.T) {
	tests := []struct{ name, edit, want string }{
		{"not json", `{`, "not valid JSON"},
		{"bad name", strings.Replace(testMetadata, `"trips"`, `"../etc"`, 1), `invalid name "../etc"`},
		{"bad version", strings.Replace(testMetadata, `"version": 3`, `"version": 0`, 1), "version must be a positive integer"},
		{"unsupported type", strings.Replace(testMetadata, `tensor(bool)`, `tensor(float16)`, 1), `input "night" has unsupported type "tensor(float16)"`},
		{"duplicate input", strings.Replace(testMetadata, `"name": "hour"`, `"name": "zone"`, 1), `input "zone" is listed twice`},
		{"no onnx path", strings.Replace(testMetadata, `"path": "model.onnx"`, `"path": ""`, 1), "files.onnx.path is missing"},
		{"unknown task", strings.Replace(testMetadata, `"regression"`, `"ranking"`, 1), `task must be "regression" or "classification", got "ranking"`},
		{"range on a string", strings.Replace(testMetadata, `"tensor(string)", "shape": [-1, 1]`, `"tensor(string)", "shape": [-1, 1], "range": [0, 1]`, 1),
			`input "vendor": a range applies to numbers, not tensor(string)`},
		{"range upside down", strings.Replace(testMetadata, `"range": [0, 1000]`, `"range": [1000, 0]`, 1), `input "distance": range must be [min, max] with min <= max, got [1000 0]`},
		{"range of one number", strings.Replace(testMetadata, `"range": [0, 1000]`, `"range": [5]`, 1), `range must be [min, max]`},
		{"regression with two outputs", strings.Replace(testMetadata, `"outputs": [`, `"outputs": [{"name": "x", "type": "tensor(float)", "shape": [-1, 1]}, `, 1),
			"a regression model has one numeric output, got x tensor(float) [-1 1], variable tensor(float) [-1 1]"},
		{"classifier without classes", classifierMetadata(`"classes": [0, 1],`, ``), "a classifier needs at least two classes, got []"},
		{"classifier with a ZipMap", classifierMetadata(`"tensor(float)", "shape": [-1, 2]`, `"tensor(string)", "shape": [-1]`),
			"a classifier with 2 classes outputs label tensor(int64) [-1], probabilities tensor(float) [-1 2] (export with ZipMap off), got label tensor(int64) [-1], probabilities tensor(string) [-1]"},
		{"classifier with more classes than probabilities", classifierMetadata(`"classes": [0, 1]`, `"classes": [0, 1, 2]`),
			"a classifier with 3 classes outputs label tensor(int64) [-1], probabilities tensor(float) [-1 3]"},
		{"classifier outputs swapped", classifierMetadata(`"name": "label"`, `"name": "labels"`), "got labels tensor(int64) [-1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := skl2go.ParseMetadata([]byte(tt.edit))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// classifierMetadata is a classifier's model.json with old replaced by new.
func classifierMetadata(old, new string) string {
	doc := `{
  "name": "tips", "version": 1, "task": "classification", "classes": [0, 1],
  "inputs": [{"name": "distance", "type": "tensor(float)", "shape": [-1, 1]}],
  "outputs": [
    {"name": "label", "type": "tensor(int64)", "shape": [-1]},
    {"name": "probabilities", "type": "tensor(float)", "shape": [-1, 2]}
  ],
  "files": {"onnx": {"path": "model.onnx"}}
}`
	return strings.Replace(doc, old, new, 1)
}

func TestParseMetadataAcceptsAClassifier(t *testing.T) {
	m, err := skl2go.ParseMetadata([]byte(classifierMetadata("", "")))
	if err != nil {
		t.Fatal(err)
	}
	if m.Task != skl2go.Classification || len(m.Classes) != 2 || m.Classes[1] != 1 {
		t.Errorf("task %q, classes %v", m.Task, m.Classes)
	}
}

func TestAgreesWithSklearn(t *testing.T) {
	regression := testMeta(t)
	classifier, err := skl2go.ParseMetadata([]byte(classifierMetadata("", "")))
	if err != nil {
		t.Fatal(err)
	}
	durations := []skl2go.Output{{Name: "variable", Type: skl2go.Float32, Shape: []int64{2, 1},
		Values: skl2go.Values{Float32: []float32{12.5, 0.25}}}}
	tips := []skl2go.Output{
		{Name: "label", Type: skl2go.Int64, Shape: []int64{2}, Values: skl2go.Values{Int64: []int64{1, 0}}},
		{Name: "probabilities", Type: skl2go.Float32, Shape: []int64{2, 2}, Values: skl2go.Values{Float32: []float32{0.25, 0.75, 0.875, 0.125}}},
	}
	tests := []struct {
		name    string
		meta    *skl2go.Metadata
		outputs []skl2go.Output
		row     int
		want    string
		err     string // "" when they agree
	}{
		{"regression equal", regression, durations, 0, `12.5`, ""},
		{"regression within 1e-4", regression, durations, 0, `12.5012`, ""},
		{"regression off", regression, durations, 0, `12.502`, "graph 12.5, sklearn 12.502"},
		{"regression near zero within the floor", regression, durations, 1, `0.25009`, ""},
		{"regression not a number", regression, durations, 0, `{"label": 1}`, "is not a number"},
		{"classifier equal", classifier, tips, 0, `{"label": 1, "probabilities": [0.25, 0.75]}`, ""},
		{"classifier within 1e-5", classifier, tips, 1, `{"label": 0, "probabilities": [0.875009, 0.124991]}`, ""},
		{"classifier other label", classifier, tips, 0, `{"label": 0, "probabilities": [0.25, 0.75]}`, "label: graph 1, sklearn 0"},
		{"classifier probability off", classifier, tips, 1, `{"label": 0, "probabilities": [0.875, 0.12502]}`,
			"probabilities[1]: graph 0.125, sklearn 0.12502 (more than 1e-05 apart)"},
		{"classifier too few probabilities", classifier, tips, 0, `{"label": 1, "probabilities": [1]}`, `is not {"label": …, "probabilities": [2 numbers]}`},
		{"classifier given a number", classifier, tips, 0, `1`, `is not {"label"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.meta.AgreesWithSklearn(tt.outputs, tt.row, []byte(tt.want))
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("err = %v, want agreement", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("err = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"trip_duration": true, "m-1.v2": true, "A": true, "9_a.": true, strings.Repeat("x", 128): true,
		"": false, "..": false, "a..b": false, "a..": false, ".hidden": false, "_a": false, "-a": false,
		"a/b": false, "a b": false, "a\\b": false, "é": false, "a\x00": false, strings.Repeat("x", 129): false,
	} {
		if got := skl2go.ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestErrorCodeAndMessage(t *testing.T) {
	err := skl2go.Errorf(skl2go.ENOTFOUND, "model %q not found", "x")
	if skl2go.ErrorCode(err) != skl2go.ENOTFOUND || skl2go.ErrorMessage(err) != `model "x" not found` {
		t.Errorf("got %q %q", skl2go.ErrorCode(err), skl2go.ErrorMessage(err))
	}
	internal := strings.NewReader("").UnreadByte() // any plain error
	if skl2go.ErrorCode(internal) != skl2go.EINTERNAL || skl2go.ErrorMessage(internal) != "internal error" {
		t.Errorf("plain errors must be internal and hidden, got %q %q", skl2go.ErrorCode(internal), skl2go.ErrorMessage(internal))
	}
	if skl2go.ErrorCode(nil) != "" {
		t.Error("nil error has a code")
	}
}

func TestWithinTolerance(t *testing.T) {
	tests := []struct {
		got, want float64
		ok        bool
	}{
		{12.0011, 12.0, true}, {12.002, 12.0, false}, {0.00009, 0, true}, {0.0002, 0, false}, {-30.002, -30, true},
	}
	for _, tt := range tests {
		if ok := skl2go.WithinTolerance(tt.got, tt.want); ok != tt.ok {
			t.Errorf("WithinTolerance(%v, %v) = %v, want %v", tt.got, tt.want, ok, tt.ok)
		}
	}
}
