// Package skl2go holds the domain of the skl2go model server: the model
// metadata read from the model repository (model.json), the typed columns a
// request decodes into, the outputs a model returns, and the interfaces the
// storage, runtime and HTTP packages implement or use.
//
// It depends on the standard library only; each dependency (ONNX Runtime,
// HTTP, Prometheus) and each wire protocol (tfserving, oip) lives in a
// package of its own. The rules by which any protocol turns a value into a
// column's element are here (column.go), so that the protocols agree.
package skl2go

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
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

// Numeric reports whether t is a number type (integer or float).
func (t DataType) Numeric() bool {
	switch t {
	case Float32, Float64, Int64, Int32:
		return true
	}
	return false
}

// TensorSpec describes one model input or output. A -1 in Shape is a
// dimension of any size (the batch dimension). Range, when set on a numeric
// input, is the [min, max] a request's value must lie in. Nullable, on a
// float input, says the model imputes missing values: a JSON null (or a
// NaN in binary data) is sent to it as NaN.
type TensorSpec struct {
	Name     string    `json:"name"`
	Type     DataType  `json:"type"`
	Shape    []int64   `json:"shape"`
	Range    []float64 `json:"range,omitempty"`
	Nullable bool      `json:"nullable,omitempty"`
}

// NewColumn returns an empty column for this input.
func (s *TensorSpec) NewColumn() Column {
	return Column{Name: s.Name, Type: s.Type, Range: s.Range, Nullable: s.Nullable}
}

// Example is a held-out row with the prediction sklearn made for it; the
// runtime replays examples when it loads a model.
type Example struct {
	Instance   json.RawMessage `json:"instance"`
	Prediction json.RawMessage `json:"prediction"`
}

// The tasks a model may solve (model.json's "task").
const (
	// Regression models have one output: a number per row.
	Regression = "regression"
	// Classification models have two outputs: LabelOutput, the class per
	// row, and ProbabilitiesOutput, one probability per class (in the order
	// of Metadata.Classes) per row.
	Classification = "classification"
)

// The output names of a classifier (skl2onnx's, without ZipMap).
const (
	LabelOutput         = "label"
	ProbabilitiesOutput = "probabilities"
)

// Metadata is the part of model.json the server uses. Raw keeps the whole
// document, served as is by the metadata endpoint.
type Metadata struct {
	Name     string       `json:"name"`
	Version  int          `json:"version"`
	Task     string       `json:"task"`
	Classes  []int64      `json:"classes"`
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

// ValidName reports whether name is an acceptable model name, in the
// repository and in URLs: 1 to 128 letters, digits, '_', '.', '-', starting
// with a letter or digit, no "..". (A loop, not a regexp: it runs on every
// request.)
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i == 0:
			return false
		case c == '_', c == '-':
		case c == '.':
			if name[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
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
		if err := checkRange(in); err != nil {
			return nil, fmt.Errorf("model.json: input %q: %w", in.Name, err)
		}
		if in.Nullable && in.Type != Float32 && in.Type != Float64 {
			return nil, fmt.Errorf("model.json: input %q: only float inputs can be nullable (missing = NaN), not %s", in.Name, in.Type)
		}
		m.inputIndex[in.Name] = i
	}
	for _, out := range m.Outputs {
		if !out.Type.Valid() {
			return nil, fmt.Errorf("model.json: output %q has unsupported type %q", out.Name, out.Type)
		}
	}
	switch m.Task {
	case Regression:
		if len(m.Outputs) != 1 || !m.Outputs[0].Type.Numeric() {
			return nil, fmt.Errorf("model.json: a regression model has one numeric output, got %s", specList(m.Outputs))
		}
	case Classification:
		if err := checkClassifier(&m); err != nil {
			return nil, fmt.Errorf("model.json: %w", err)
		}
	default:
		return nil, fmt.Errorf("model.json: task must be %q or %q, got %q", Regression, Classification, m.Task)
	}
	return &m, nil
}

func checkRange(in TensorSpec) error {
	switch {
	case in.Range == nil:
		return nil
	case !in.Type.Numeric():
		return fmt.Errorf("a range applies to numbers, not %s", in.Type)
	case len(in.Range) != 2 || !(in.Range[0] <= in.Range[1]):
		return fmt.Errorf("range must be [min, max] with min <= max, got %v", in.Range)
	}
	return nil
}

// checkClassifier checks a classifier's classes and its two outputs:
// label (int64, [-1]) and probabilities (float, [-1, len(classes)]).
func checkClassifier(m *Metadata) error {
	if len(m.Classes) < 2 {
		return fmt.Errorf("a classifier needs at least two classes, got %v", m.Classes)
	}
	want := []TensorSpec{
		{Name: LabelOutput, Type: Int64, Shape: []int64{-1}},
		{Name: ProbabilitiesOutput, Type: Float32, Shape: []int64{-1, int64(len(m.Classes))}},
	}
	ok := len(m.Outputs) == len(want)
	for i := 0; ok && i < len(want); i++ {
		got := m.Outputs[i]
		ok = got.Name == want[i].Name && got.Type == want[i].Type && slices.Equal(got.Shape, want[i].Shape)
	}
	if !ok {
		return fmt.Errorf("a classifier with %d classes outputs %s (export with ZipMap off), got %s",
			len(m.Classes), specList(want), specList(m.Outputs))
	}
	return nil
}

// specList describes tensors for error messages: name tensor(type) [shape], ….
func specList(specs []TensorSpec) string {
	var b strings.Builder
	for i, s := range specs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s %v", s.Name, s.Type, s.Shape)
	}
	return b.String()
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

// MakeValues returns n zero elements of type t.
func MakeValues(t DataType, n int) Values {
	var v Values
	v.Grow(t, n)
	return v.Slice(t, 0, n) // within the capacity Grow made
}

// Grow makes room for n more elements of type t without reallocating.
func (v *Values) Grow(t DataType, n int) {
	switch t {
	case Float32:
		v.Float32 = slices.Grow(v.Float32, n)
	case Float64:
		v.Float64 = slices.Grow(v.Float64, n)
	case Int64:
		v.Int64 = slices.Grow(v.Int64, n)
	case Int32:
		v.Int32 = slices.Grow(v.Int32, n)
	case String:
		v.String = slices.Grow(v.String, n)
	case Bool:
		v.Bool = slices.Grow(v.Bool, n)
	}
}

// Append appends src's elements of type t.
func (v *Values) Append(t DataType, src *Values) {
	switch t {
	case Float32:
		v.Float32 = append(v.Float32, src.Float32...)
	case Float64:
		v.Float64 = append(v.Float64, src.Float64...)
	case Int64:
		v.Int64 = append(v.Int64, src.Int64...)
	case Int32:
		v.Int32 = append(v.Int32, src.Int32...)
	case String:
		v.String = append(v.String, src.String...)
	case Bool:
		v.Bool = append(v.Bool, src.Bool...)
	}
}

// Slice returns elements [start, end) of type t, sharing v's memory; the
// capacity is capped so that appending to the slice cannot overwrite v.
func (v *Values) Slice(t DataType, start, end int) Values {
	switch t {
	case Float32:
		return Values{Float32: v.Float32[start:end:end]}
	case Float64:
		return Values{Float64: v.Float64[start:end:end]}
	case Int64:
		return Values{Int64: v.Int64[start:end:end]}
	case Int32:
		return Values{Int32: v.Int32[start:end:end]}
	case String:
		return Values{String: v.String[start:end:end]}
	case Bool:
		return Values{Bool: v.Bool[start:end:end]}
	}
	return Values{}
}

// Column holds one input's values for every row of a batch. Range, when
// set, is the [min, max] of its input's TensorSpec: decoding refuses values
// outside it. Nullable columns take null (missing) as NaN.
type Column struct {
	Name     string
	Type     DataType
	Range    []float64
	Nullable bool
	Values
}

// AppendMissing appends NaN for a missing value (JSON null); false if the column is not nullable.
func (c *Column) AppendMissing() bool {
	switch {
	case !c.Nullable:
		return false
	case c.Type == Float32:
		c.Float32 = append(c.Float32, float32(math.NaN()))
	case c.Type == Float64:
		c.Float64 = append(c.Float64, math.NaN())
	default:
		return false
	}
	return true
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

// ExecutionCounter is implemented by models that count their executions
// (runs of the runtime). With dynamic batching one execution serves several
// Predict calls, so only the model can count them.
type ExecutionCounter interface {
	Executions() uint64
}

// ModelSummary lists the versions of one model a store serves.
type ModelSummary struct {
	Name     string `json:"name"`
	Versions []int  `json:"versions"`
	Latest   int    `json:"latest"`
	// LoadSeconds is how long the latest version took to read, load and
	// check (0 for models a store did not load itself).
	LoadSeconds float64 `json:"-"`
}

// String shows the name, the versions and the latest, as {name [1 2] 2}:
// what logs and test messages print, the load time left out.
func (m ModelSummary) String() string {
	return fmt.Sprintf("{%s %v %d}", m.Name, m.Versions, m.Latest)
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

// InputIndex returns the position of the named input in m.Inputs.
func (m *Metadata) InputIndex(name string) (int, bool) {
	i, ok := m.inputIndex[name]
	return i, ok
}

// InputNames lists the model's input names, for messages.
func (m *Metadata) InputNames() string { return tensorNames(m.Inputs) }

// OutputNames lists the model's output names, for messages.
func (m *Metadata) OutputNames() string { return tensorNames(m.Outputs) }

func tensorNames(specs []TensorSpec) string {
	names := make([]string, len(specs))
	for i, t := range specs {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}
