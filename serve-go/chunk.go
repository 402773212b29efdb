package skl2go

import (
	"context"
	"fmt"
)

// Slice returns rows [start, end) of the batch, sharing its memory (capped,
// so that appending to the slice cannot touch the rows after it).
func (b *Batch) Slice(start, end int) *Batch {
	out := &Batch{Rows: end - start, Columns: make([]Column, len(b.Columns))}
	for i, col := range b.Columns {
		width := 1
		if b.Rows > 0 {
			width = col.Len() / b.Rows
		}
		out.Columns[i] = col
		out.Columns[i].Values = col.Values.Slice(col.Type, start*width, end*width)
	}
	return out
}

// Len returns the number of values of the column's type.
func (c *Column) Len() int {
	switch c.Type {
	case Float32:
		return len(c.Float32)
	case Float64:
		return len(c.Float64)
	case Int64:
		return len(c.Int64)
	case Int32:
		return len(c.Int32)
	case String:
		return len(c.String)
	case Bool:
		return len(c.Bool)
	}
	return 0
}

// PredictInChunks runs batch through model at most rows rows at a time and
// joins the outputs, row after row: the answer of one run of the whole
// batch, because a row's answer does not depend on the rows run with it
// (onnx.Model.Predict). Before each run it calls wait, which may hold the
// run back (an experiment's mirror waits for the requests to pass) or fail
// it. rows < 1 runs the whole batch at once.
func PredictInChunks(ctx context.Context, model Model, batch *Batch, rows int, wait func(context.Context) error) ([]Output, error) {
	if rows < 1 || rows > batch.Rows {
		rows = batch.Rows
	}
	var joined []Output
	for start := 0; start < batch.Rows || start == 0; start += rows {
		if err := wait(ctx); err != nil {
			return nil, err
		}
		end := min(start+rows, batch.Rows)
		part := batch
		if start > 0 || end < batch.Rows {
			part = batch.Slice(start, end)
		}
		outputs, err := model.Predict(ctx, part)
		if err != nil {
			return nil, err
		}
		if joined == nil {
			joined = outputs
			if end == batch.Rows {
				return joined, nil
			}
			joined = make([]Output, len(outputs))
			for o, out := range outputs {
				joined[o] = Output{Name: out.Name, Type: out.Type, Shape: append([]int64{0}, out.Shape[1:]...)}
			}
		}
		if len(outputs) != len(joined) {
			return nil, fmt.Errorf("rows %d to %d: %d outputs, the rows before had %d", start, end, len(outputs), len(joined))
		}
		for o := range outputs {
			out, dst := &outputs[o], &joined[o]
			if len(out.Shape) == 0 || out.Shape[0] != int64(end-start) || out.Name != dst.Name || out.Type != dst.Type {
				return nil, fmt.Errorf("rows %d to %d: output %s has shape %v", start, end, out.Name, out.Shape)
			}
			dst.Values.Append(out.Type, &out.Values)
			dst.Shape[0] += out.Shape[0]
		}
		if end == batch.Rows {
			break
		}
	}
	return joined, nil
}
