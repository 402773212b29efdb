// Package skl2go holds the domain of the skl2go model server: the model
// metadata read from the model repository (model.json), the typed columns a
// request decodes into, the outputs a model returns, and the interfaces the
// storage, runtime and HTTP packages implement or use.
//
// It depends on the standard library only; each dependency (ONNX Runtime,
// HTTP, Prometheus) lives in a package of its own.
package skl2go

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
)

// DataType is a tensor type, named as ONNX Runtime and model.json name it.
type DataType string

// The tensor types a model input or output may have.
const (
	Float32 DataType = "tensor(float)"
	Float64 DataType = "tensor(double)"
	Int64   DataType = "tensor(int64)"
	Int32   DataType = "tensor(int32)"
	String  DataType = "tensor(string)"
	Bool    DataType = "tensor(bool)"
)

// Valid reports whether t is a type the server can decode from JSON.
func (t DataType) Valid() bool {
	switch t {
	case Float32, Float64, Int64, Int32, String, Bool:
		return true
	}
	return false
}

// TensorSpec describes one model input or output. A -1 in Shape is a
// dimension of any size (the batch dimension).
type TensorSpec struct {
	Name  string   `json:"name"`
	Type  DataType `json:"type"`
	Shape []int64  `json:"shape"`
}

// Example is a held-out row with the prediction sklearn made for it; the
// runtime replays examples when it loads a model.
type Example struct {
	Instance   json.RawMessage `json:"instance"`
	Prediction json.RawMessage `json:"prediction"`
}

// Metadata is the part of model.json the server uses. Raw keeps the whole
// document, served as is by the metadata endpoint.
type Metadata struct {
	Name     string       `json:"name"`
	Version  int          `json:"version"`
	Task     string       `json:"task"`
	Inputs   []TensorSpec `json:"inputs"`
	Outputs  []TensorSpec `json:"outputs"`
	Examples []Example    `json:"examples"`
	Files    struct {
		ONNX struct {
			Path   string `json:"path"`
			SHA256 string `json:"sha256"`
		} `json:"onnx"`
	} `json:"files"`

	Raw json.RawMessage `json:"-"`

	inputIndex map[string]int
}

// nameRE is what a model name may look like, in the repository and in URLs.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidName reports whether name is an acceptable model name: letters,
// digits, '_', '.', '-', starting with a letter or digit, no "..".
func ValidName(name string) bool {
	return nameRE.MatchString(name) && !containsDotDot(name)
}

func containsDotDot(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '.' && s[i+1] == '.' {
			return true
		}
	}
	return false
}

// ParseMetadata parses and checks a model.json document.
func ParseMetadata(data []byte) (*Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("model.json is not valid JSON: %w", err)
	}
	m.Raw = append(json.RawMessage(nil), data...)
	switch {
	case !ValidName(m.Name):
		return nil, fmt.Errorf("model.json: invalid name %q", m.Name)
	case m.Version < 1:
		return nil, fmt.Errorf("model.json: version must be a positive integer, got %d", m.Version)
	case len(m.Inputs) == 0:
		return nil, fmt.Errorf("model.json: no inputs")
	case len(m.Outputs) == 0:
		return nil, fmt.Errorf("model.json: no outputs")
	case m.Files.ONNX.Path == "":
		return nil, fmt.Errorf("model.json: files.onnx.path is missing")
	}
	m.inputIndex = make(map[string]int, len(m.Inputs))
	for i, in := range m.Inputs {
		if in.Name == "" {
			return nil, fmt.Errorf("model.json: input %d has no name", i)
		}
		if !in.Type.Valid() {
			return nil, fmt.Errorf("model.json: input %q has unsupported type %q", in.Name, in.Type)
		}
		if _, dup := m.inputIndex[in.Name]; dup {
			return nil, fmt.Errorf("model.json: input %q is listed twice", in.Name)
		}
		m.inputIndex[in.Name] = i
	}
	for _, out := range m.Outputs {
		if !out.Type.Valid() {
			return nil, fmt.Errorf("model.json: output %q has unsupported type %q", out.Name, out.Type)
		}
	}
	return &m, nil
}

// Values holds a tensor's elements, flattened; only the slice matching the
// tensor's DataType is used.
type Values struct {
	Float32 []float32
	Float64 []float64
	Int64   []int64
	Int32   []int32
	String  []string
	Bool    []bool
}

// Column holds one input's values for every row of a batch.
type Column struct {
	Name string
	Type DataType
	Values
}

// Batch is a decoded request: one Column per model input, in the order of
// Metadata.Inputs, each Rows long.
type Batch struct {
	Rows    int
	Columns []Column
}

// Output is one model output for a batch, flattened row-major; Shape is the
// real shape (first dimension = rows).
type Output struct {
	Name  string
	Type  DataType
	Shape []int64
	Values
}

// Float64s returns numeric output values as float64 (nil for strings).
func (o *Output) Float64s() []float64 {
	var out []float64
	switch o.Type {
	case Float32:
		for _, v := range o.Float32 {
			out = append(out, float64(v))
		}
	case Float64:
		out = append(out, o.Float64...)
	case Int64:
		for _, v := range o.Int64 {
			out = append(out, float64(v))
		}
	case Int32:
		for _, v := range o.Int32 {
			out = append(out, float64(v))
		}
	}
	return out
}

// Model is a loaded model version that can predict.
type Model interface {
	// Metadata describes the model; it must not be modified.
	Metadata() *Metadata
	// Predict runs the model on a batch decoded for this model.
	Predict(ctx context.Context, batch *Batch) ([]Output, error)
	// Close releases the model's resources; Predict must not run after it.
	Close() error
}

// ModelSummary lists the versions of one model a store serves.
type ModelSummary struct {
	Name     string `json:"name"`
	Versions []int  `json:"versions"`
	Latest   int    `json:"latest"`
}

// ModelStore finds the models being served. Versions may be swapped while
// requests run: a request acquires the version it uses and releases it when
// done, and a version is closed only after its last release.
type ModelStore interface {
	// Acquire returns the given version of a model, or its latest version
	// when version is 0, with the function to call (once) when done with
	// it. The error has code ENOTFOUND when there is none.
	Acquire(name string, version int) (m Model, release func(), err error)
	// Models lists every model served, sorted by name.
	Models() []ModelSummary
	// LoadFailures counts, by model name, the versions that failed to load
	// or to validate since start-up (and were refused).
	LoadFailures() map[string]int
}

// WithinTolerance reports whether got is close enough to sklearn's want: the
// bound export checks, 1e-4 relative with a floor of 1 (minute) on |want|.
func WithinTolerance(got, want float64) bool {
	return math.Abs(got-want) <= 1e-4*math.Max(math.Abs(want), 1)
}
