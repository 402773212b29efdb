package oip

import (
	"slices"
	"strings"
	"unicode/utf8"

	"skl2go"
)

// The checks an inference request's tensors pass whatever the transport
// (REST's JSON and binary data, gRPC's typed and raw contents), so that a
// tensor is accepted, or refused with the same words, by both.

// BatchBuilder gathers a request's input tensors into a batch for a model:
// each input once, of the model's datatype and shape, all with the same
// number of rows, at most maxRows.
type BatchBuilder struct {
	meta    *skl2go.Metadata
	maxRows int
	batch   *skl2go.Batch
	given   []string // where each model input was given, "" if not yet
}

// NewBatchBuilder starts a batch for the model.
func NewBatchBuilder(meta *skl2go.Metadata, maxRows int) *BatchBuilder {
	return &BatchBuilder{meta: meta, maxRows: maxRows,
		batch: &skl2go.Batch{Rows: -1, Columns: make([]skl2go.Column, len(meta.Inputs))},
		given: make([]string, len(meta.Inputs))}
}

// Input finds the model input a request's tensor names; where names the
// tensor in the request (inputs[2]). It returns the input's index and the
// name to give the tensor in later errors (input "trip_distance").
func (b *BatchBuilder) Input(where, name string) (index int, named string, err error) {
	meta := b.meta
	index, ok := meta.InputIndex(name)
	if !ok {
		return 0, "", skl2go.Errorf(skl2go.EINVALID, "%s: unknown input %s (model %s has inputs: %s)", where, skl2go.Quote(name), meta.Name, meta.InputNames())
	}
	if b.given[index] != "" {
		return 0, "", skl2go.Errorf(skl2go.EINVALID, "%s: input %s is given twice", where, skl2go.Quote(name))
	}
	b.given[index] = where
	return index, "input " + skl2go.Quote(name), nil
}

// Column checks the datatype and shape of the tensor Input found (index,
// named where) and returns the empty column to fill with its elements and
// their number.
func (b *BatchBuilder) Column(index int, where, datatype string, shape []int64) (col *skl2go.Column, count int, err error) {
	spec := b.meta.Inputs[index]
	if err := checkDatatype(datatype, spec, where); err != nil {
		return nil, 0, err
	}
	if err := checkShape(shape, spec, where); err != nil {
		return nil, 0, err
	}
	rows := 1
	if len(shape) > 0 {
		rows = int(shape[0])
	}
	switch {
	case rows == 0:
		return nil, 0, skl2go.Errorf(skl2go.EINVALID, "%s: shape %s has no rows: send at least one", where, formatShape(shape))
	case rows > b.maxRows:
		return nil, 0, skl2go.Errorf(skl2go.ETOOLARGE, "too many rows: at most %d per request", b.maxRows)
	case b.batch.Rows >= 0 && rows != b.batch.Rows:
		return nil, 0, skl2go.Errorf(skl2go.EINVALID, "%s: shape %s has %d rows, but the inputs before it have %d", where, formatShape(shape), rows, b.batch.Rows)
	}
	b.batch.Rows = rows
	col = &b.batch.Columns[index]
	*col = spec.NewColumn()
	return col, Elements(shape), nil
}

// Batch checks that every model input was given and returns the batch.
func (b *BatchBuilder) Batch() (*skl2go.Batch, error) {
	for i, where := range b.given {
		if where == "" {
			return nil, skl2go.Errorf(skl2go.EINVALID, "input %s is missing (model %s has inputs: %s)", skl2go.Quote(b.meta.Inputs[i].Name), b.meta.Name, b.meta.InputNames())
		}
	}
	return b.batch, nil
}

// checkDatatype requires the datatype that is exactly the input's type.
func checkDatatype(datatype string, spec skl2go.TensorSpec, where string) error {
	want := types[spec.Type]
	switch {
	case !knownTypes[datatype]:
		return skl2go.Errorf(skl2go.EINVALID, "%s: unknown datatype %s (the model expects %s)", where, skl2go.Quote(datatype), want)
	case datatype != want:
		return skl2go.Errorf(skl2go.EINVALID, "%s: datatype %s does not match the model, which expects %s", where, datatype, want)
	}
	return nil
}

// checkShape requires the input's rank and fixed dimensions; every
// variable dimension (-1) is the batch's row count.
func checkShape(shape []int64, spec skl2go.TensorSpec, where string) error {
	if slices.ContainsFunc(shape, func(d int64) bool { return d < 0 }) {
		return skl2go.Errorf(skl2go.EINVALID, "%s: shape must be non-negative integers, got %s", where, formatShape(shape))
	}
	ok := len(shape) == len(spec.Shape)
	for i := 0; ok && i < len(shape); i++ {
		want := spec.Shape[i]
		if want < 0 {
			want = shape[0]
		}
		ok = shape[i] == want
	}
	if !ok {
		return skl2go.Errorf(skl2go.EINVALID, "%s: shape %s does not match the model's %s (-1: any number of rows)", where, formatShape(shape), formatShape(spec.Shape))
	}
	return nil
}

// DecodeBinary appends count elements in the binary tensor encoding (the
// REST binary extension's and gRPC's raw contents) from raw to col, which
// Input returned for the tensor named where.
func DecodeBinary(raw []byte, col *skl2go.Column, count int, where string) error {
	if err := decodeTensorBinary(raw, col, count); err != nil {
		return skl2go.Errorf(skl2go.EINVALID, "%s: %v", where, err)
	}
	return nil
}

// Contents are a tensor's elements as typed values (gRPC's contents): the
// slice of the column's type holds them, and the others are empty.
type Contents struct {
	Bool    []bool
	Int32   []int32
	Int64   []int64
	Float32 []float32
	Float64 []float64
	Bytes   [][]byte
}

// DecodeContents appends the count elements of c to col, which Input
// returned for the tensor named where, with the checks binary data has:
// finite numbers in the column's range (NaN as missing where nullable),
// strings of valid UTF-8 without NUL.
func DecodeContents(c *Contents, col *skl2go.Column, count int, where string) error {
	n := 0
	var err error
	switch col.Type {
	case skl2go.Float32:
		n = len(c.Float32)
		err = appendChecked(col, c.Float32, count, &col.Float32)
	case skl2go.Float64:
		n = len(c.Float64)
		err = appendChecked(col, c.Float64, count, &col.Float64)
	case skl2go.Int64:
		n = len(c.Int64)
		err = appendChecked(col, c.Int64, count, &col.Int64)
	case skl2go.Int32:
		n = len(c.Int32)
		err = appendChecked(col, c.Int32, count, &col.Int32)
	case skl2go.Bool:
		n = len(c.Bool)
		if n == count {
			col.Bool = append(col.Bool, c.Bool...)
		}
	case skl2go.String:
		n = len(c.Bytes)
		for i := 0; i < n && n == count; i++ {
			s := string(c.Bytes[i])
			if !utf8.ValidString(s) {
				return skl2go.Errorf(skl2go.EINVALID, "%s: element %d: not valid UTF-8", where, i)
			}
			if strings.IndexByte(s, 0) >= 0 {
				return skl2go.Errorf(skl2go.EINVALID, "%s: element %d: contains a NUL byte", where, i)
			}
			col.String = append(col.String, s)
		}
	default:
		return skl2go.Errorf(skl2go.EINVALID, "%s: unsupported type %s", where, col.Type)
	}
	if n != count {
		return skl2go.Errorf(skl2go.EINVALID, "%s: contents have %d elements, the shape needs %d", where, n, count)
	}
	if err != nil {
		return skl2go.Errorf(skl2go.EINVALID, "%s: %v", where, err)
	}
	return nil
}

// appendChecked appends values to dst after checking each as binary data
// is checked, when there are count of them.
func appendChecked[T float32 | float64 | int32 | int64](col *skl2go.Column, values []T, count int, dst *[]T) error {
	if len(values) != count {
		return nil
	}
	for i, v := range values {
		if err := checkBinary(col, float64(v), i); err != nil {
			return err
		}
	}
	*dst = append(*dst, values...)
	return nil
}

// OutputIndex finds the requested output name in the model's outputs;
// chosen are the indexes requested before it, where names it in the
// request (outputs[1]).
func OutputIndex(meta *skl2go.Metadata, name string, chosen []int, where string) (int, error) {
	index := slices.IndexFunc(meta.Outputs, func(t skl2go.TensorSpec) bool { return t.Name == name })
	if index < 0 {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s: unknown output %s (model %s has outputs: %s)", where, skl2go.Quote(name), meta.Name, meta.OutputNames())
	}
	if slices.Contains(chosen, index) {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s: output %s is requested twice", where, skl2go.Quote(name))
	}
	return index, nil
}

// Datatype is the protocol's datatype for a model tensor type (FP32, …).
func Datatype(t skl2go.DataType) string { return types[t] }

// Elements is the number of elements of a tensor of that shape.
func Elements(shape []int64) int {
	count := 1
	for _, d := range shape {
		count *= int(d)
	}
	return count
}

// AppendBinary appends the elements of out in the binary tensor encoding.
func AppendBinary(buf []byte, out *skl2go.Output) []byte {
	return appendBinary(buf, out, Elements(out.Shape))
}
