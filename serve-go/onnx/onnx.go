package onnx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"skl2go"
	"skl2go/tfserving"
)

// Runtime owns the ONNX Runtime environment. ONNX Runtime allows one
// environment per process, so a process creates one Runtime.
type Runtime struct {
	threads int
	logger  *slog.Logger
}

// NewRuntime loads the shared library at lib and initialises ONNX Runtime.
// Each session gets `threads` intra-op threads: with several replicas per
// machine, replicas rather than threads should use the cores.
func NewRuntime(lib string, threads int, logger *slog.Logger) (*Runtime, error) {
	if threads < 1 {
		return nil, fmt.Errorf("ORT threads must be at least 1, got %d", threads)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("initialising ONNX Runtime from %s: %w", lib, err)
	}
	return &Runtime{threads: threads, logger: logger}, nil
}

// Version returns ONNX Runtime's version, e.g. "1.32.0".
func (r *Runtime) Version() string { return ort.GetVersion() }

// Close destroys the environment; every model must be closed first.
func (r *Runtime) Close() error { return ort.DestroyEnvironment() }

// Model is a model version loaded in an ONNX Runtime session. Its Predict is
// safe for concurrent use.
type Model struct {
	meta       *skl2go.Metadata
	session    *ort.DynamicAdvancedSession
	executions atomic.Uint64 // runs of the session by Predict, from load on
}

var _ skl2go.Model = (*Model)(nil)

// Load opens dir/model.onnx described by meta, checks that the graph has
// exactly the inputs and outputs model.json declares, and replays
// model.json's examples: a model whose predictions differ from sklearn's is
// refused.
func (r *Runtime) Load(dir string, meta *skl2go.Metadata) (*Model, error) {
	path := filepath.Join(dir, meta.Files.ONNX.Path)
	inputs, outputs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("%s: ONNX Runtime cannot read the graph: %w", path, err)
	}
	if err := checkSpecs("input", meta.Inputs, inputs); err != nil {
		return nil, fmt.Errorf("%s: model.json disagrees with the graph: %w", dir, err)
	}
	if err := checkSpecs("output", meta.Outputs, outputs); err != nil {
		return nil, fmt.Errorf("%s: model.json disagrees with the graph: %w", dir, err)
	}

	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	for _, set := range []func() error{
		func() error { return opts.SetIntraOpNumThreads(r.threads) },
		func() error { return opts.SetInterOpNumThreads(1) },
		func() error { return opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("%s: session options: %w", dir, err)
		}
	}
	session, err := ort.NewDynamicAdvancedSession(path, names(meta.Inputs), names(meta.Outputs), opts)
	if err != nil {
		return nil, fmt.Errorf("%s: creating the session: %w", path, err)
	}
	m := &Model{meta: meta, session: session}
	if err := m.replayExamples(); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	m.executions.Store(0) // the examples' runs do not count; m is not shared yet
	return m, nil
}

// Metadata implements skl2go.Model.
func (m *Model) Metadata() *skl2go.Metadata { return m.meta }

// Close implements skl2go.Model.
func (m *Model) Close() error { return m.session.Destroy() }

// Predict implements skl2go.Model.
//
// A row's answer does not depend on the rows run with it. ONNX Runtime's
// matrix multiply (MLAS) computes a one-row product with a kernel of its own
// that adds the terms in another order than the kernel for two rows or more,
// so a linear model's float32 answer for a lone row can differ in the last
// bit from its answer within a batch. A one-row batch is therefore run as
// two copies of the row, and the copy dropped: the answer is then the same
// whether dynamic batching merged the request or not, and the same as batch
// scoring's (python -m batch).
func (m *Model) Predict(ctx context.Context, batch *skl2go.Batch) ([]skl2go.Output, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if batch.Rows != 1 {
		return m.run(ctx, batch)
	}
	twice := &skl2go.Batch{Rows: 2, Columns: make([]skl2go.Column, len(batch.Columns))}
	for i, col := range batch.Columns {
		twice.Columns[i] = skl2go.Column{Name: col.Name, Type: col.Type, Range: col.Range}
		twice.Columns[i].Append(col.Type, &col.Values)
		twice.Columns[i].Append(col.Type, &col.Values)
	}
	outputs, err := m.run(ctx, twice)
	if err != nil {
		return nil, err
	}
	for i := range outputs {
		out := &outputs[i]
		perRow := 1
		for _, d := range out.Shape[1:] {
			perRow *= int(d)
		}
		out.Values = out.Slice(out.Type, 0, perRow)
		out.Shape[0] = 1
	}
	return outputs, nil
}

// run runs the session once on every row of batch.
func (m *Model) run(ctx context.Context, batch *skl2go.Batch) ([]skl2go.Output, error) {
	inputs := make([]ort.Value, len(batch.Columns))
	defer destroyAll(inputs)
	for i := range batch.Columns {
		col := &batch.Columns[i]
		v, err := newTensor(col.Type, &col.Values, shapeFor(m.meta.Inputs[i].Shape, batch.Rows))
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", col.Name, err)
		}
		inputs[i] = v
	}
	// Outputs of a known shape are written by ONNX Runtime straight into Go
	// memory; the others (strings, shapes only known after the run) are
	// allocated by Run and copied.
	result := make([]skl2go.Output, len(m.meta.Outputs))
	outputs := make([]ort.Value, len(m.meta.Outputs))
	defer destroyAll(outputs)
	for i, spec := range m.meta.Outputs {
		shape, known := knownShape(spec.Shape, batch.Rows)
		if !known || spec.Type == skl2go.String {
			continue
		}
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		result[i] = skl2go.Output{Name: spec.Name, Type: spec.Type, Shape: shape, Values: skl2go.MakeValues(spec.Type, n)}
		v, err := newTensor(spec.Type, &result[i].Values, ort.Shape(shape))
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", spec.Name, err)
		}
		outputs[i] = v
	}
	m.executions.Add(1)
	if err := skl2go.AroundRun(ctx, func() error { return m.session.Run(inputs, outputs) }); err != nil {
		return nil, fmt.Errorf("model %s version %d: %w", m.meta.Name, m.meta.Version, err)
	}
	for i, v := range outputs {
		if result[i].Shape != nil { // preallocated: Run filled it (and set outputs[i])
			continue
		}
		out, err := readOutput(v, m.meta.Outputs[i])
		if err != nil {
			return nil, err
		}
		if out.Shape[0] != int64(batch.Rows) {
			return nil, fmt.Errorf("output %s has %d rows for %d input rows", out.Name, out.Shape[0], batch.Rows)
		}
		result[i] = out
	}
	return result, nil
}

// Executions implements skl2go.ExecutionCounter: the runs of the session
// Predict made (not counting the examples replayed at load).
func (m *Model) Executions() uint64 { return m.executions.Load() }

// knownShape is spec with the batch dimension set to rows, if every other
// dimension is fixed.
func knownShape(spec []int64, rows int) ([]int64, bool) {
	if len(spec) == 0 || slices.ContainsFunc(spec[1:], func(d int64) bool { return d < 0 }) {
		return nil, false
	}
	return shapeFor(spec, rows), true
}

// replayExamples predicts model.json's examples and compares the outputs
// with the prediction sklearn recorded for each (the number, or the label
// and class probabilities). model.json records each example as a v1
// (TF Serving) instance, decoded as the predict API decodes one.
func (m *Model) replayExamples() error {
	if len(m.meta.Examples) == 0 {
		return nil
	}
	instances := make([]json.RawMessage, len(m.meta.Examples))
	for i, ex := range m.meta.Examples {
		instances[i] = ex.Instance
	}
	data, err := json.Marshal(instances)
	if err != nil {
		return fmt.Errorf("model.json examples: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	batch, err := tfserving.DecodeInstances(dec, m.meta, len(instances))
	if err != nil {
		return fmt.Errorf("model.json examples: %s", skl2go.ErrorMessage(err))
	}
	outputs, err := m.Predict(context.Background(), batch)
	if err != nil {
		return fmt.Errorf("predicting model.json examples: %w", err)
	}
	var bad []string
	for i, ex := range m.meta.Examples {
		if err := m.meta.AgreesWithSklearn(outputs, i, ex.Prediction); err != nil {
			bad = append(bad, fmt.Sprintf("examples[%d]: %v", i, err))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the graph does not reproduce sklearn's predictions recorded in model.json: %s", strings.Join(bad, "; "))
	}
	return nil
}

// checkSpecs compares model.json's tensors with the graph's, by name.
func checkSpecs(kind string, declared []skl2go.TensorSpec, graph []ort.InputOutputInfo) error {
	byName := make(map[string]ort.InputOutputInfo, len(graph))
	for _, g := range graph {
		byName[g.Name] = g
	}
	for _, d := range declared {
		g, ok := byName[d.Name]
		if !ok {
			return fmt.Errorf("%s %q is not in the graph (graph %ss: %s)", kind, d.Name, kind, strings.Join(names(graph), ", "))
		}
		delete(byName, d.Name)
		if g.OrtValueType != ort.ONNXTypeTensor {
			return fmt.Errorf("%s %q is a %v in the graph, not a tensor", kind, d.Name, g.OrtValueType)
		}
		if got := dataType(g.DataType); got != d.Type {
			return fmt.Errorf("%s %q: model.json says %s, the graph has %s", kind, d.Name, d.Type, got)
		}
		if len(g.Dimensions) != len(d.Shape) {
			return fmt.Errorf("%s %q: model.json says shape %v, the graph has %v", kind, d.Name, d.Shape, g.Dimensions)
		}
		for i, dim := range g.Dimensions {
			if dim != d.Shape[i] && !(dim < 0 && d.Shape[i] < 0) {
				return fmt.Errorf("%s %q: model.json says shape %v, the graph has %v", kind, d.Name, d.Shape, g.Dimensions)
			}
		}
	}
	for name := range byName {
		return fmt.Errorf("graph %s %q is not described in model.json", kind, name)
	}
	return nil
}

func dataType(t ort.TensorElementDataType) skl2go.DataType {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return skl2go.Float32
	case ort.TensorElementDataTypeDouble:
		return skl2go.Float64
	case ort.TensorElementDataTypeInt64:
		return skl2go.Int64
	case ort.TensorElementDataTypeInt32:
		return skl2go.Int32
	case ort.TensorElementDataTypeString:
		return skl2go.String
	case ort.TensorElementDataTypeBool:
		return skl2go.Bool
	}
	return skl2go.DataType("unsupported " + t.String())
}

// shapeFor replaces the variable (batch) dimension with the row count.
func shapeFor(spec []int64, rows int) ort.Shape {
	shape := make(ort.Shape, len(spec))
	for i, d := range spec {
		if d < 0 {
			d = int64(rows)
		}
		shape[i] = d
	}
	return shape
}

// newTensor wraps values (Go memory, not copied) in an ONNX Runtime tensor.
func newTensor(t skl2go.DataType, values *skl2go.Values, shape ort.Shape) (ort.Value, error) {
	switch t {
	case skl2go.Float32:
		return ort.NewTensor(shape, values.Float32)
	case skl2go.Float64:
		return ort.NewTensor(shape, values.Float64)
	case skl2go.Int64:
		return ort.NewTensor(shape, values.Int64)
	case skl2go.Int32:
		return ort.NewTensor(shape, values.Int32)
	case skl2go.Bool:
		return ort.NewTensor(shape, values.Bool)
	case skl2go.String:
		t, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, err
		}
		if err := t.SetContents(values.String); err != nil {
			t.Destroy()
			return nil, err
		}
		return t, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

// readOutput copies an ORT output into Go memory (the value is destroyed
// after the call).
func readOutput(v ort.Value, spec skl2go.TensorSpec) (skl2go.Output, error) {
	out := skl2go.Output{Name: spec.Name, Type: spec.Type, Shape: append([]int64(nil), v.GetShape()...)}
	if len(out.Shape) == 0 {
		return out, fmt.Errorf("output %s is a scalar, expected a batch", spec.Name)
	}
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		out.Float32 = append([]float32(nil), t.GetData()...)
	case *ort.Tensor[float64]:
		out.Float64 = append([]float64(nil), t.GetData()...)
	case *ort.Tensor[int64]:
		out.Int64 = append([]int64(nil), t.GetData()...)
	case *ort.Tensor[int32]:
		out.Int32 = append([]int32(nil), t.GetData()...)
	case *ort.Tensor[bool]:
		out.Bool = append([]bool(nil), t.GetData()...)
	case *ort.StringTensor:
		s, err := t.GetContents()
		if err != nil {
			return out, err
		}
		out.String = s
	default:
		return out, fmt.Errorf("output %s has unsupported value type %T", spec.Name, v)
	}
	return out, nil
}

func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil {
			v.Destroy()
		}
	}
}

// names lists the Name of each tensor description.
func names[T skl2go.TensorSpec | ort.InputOutputInfo](items []T) []string {
	out := make([]string, len(items))
	for i, item := range items {
		switch v := any(item).(type) {
		case skl2go.TensorSpec:
			out[i] = v.Name
		case ort.InputOutputInfo:
			out[i] = v.Name
		}
	}
	return out
}
