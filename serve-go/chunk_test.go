package skl2go_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"skl2go"
)

// rowModel answers each row x of its one int64 input with y = 2x (one value
// per row) and p = (x, -x) (two per row), and records each run's rows.
type rowModel struct {
	runs    []int
	badRows int // a run of this many rows answers one row short
}

func (m *rowModel) Metadata() *skl2go.Metadata { return &skl2go.Metadata{} }
func (m *rowModel) Close() error               { return nil }
func (m *rowModel) Predict(_ context.Context, b *skl2go.Batch) ([]skl2go.Output, error) {
	m.runs = append(m.runs, b.Rows)
	xs := b.Columns[0].Int64
	if len(xs) != b.Rows {
		return nil, errors.New("column length is not the batch's rows")
	}
	y := skl2go.Output{Name: "y", Type: skl2go.Float64, Shape: []int64{int64(b.Rows)}}
	p := skl2go.Output{Name: "p", Type: skl2go.Float32, Shape: []int64{int64(b.Rows), 2}}
	for _, x := range xs {
		y.Float64 = append(y.Float64, float64(2*x))
		p.Float32 = append(p.Float32, float32(x), float32(-x))
	}
	if b.Rows == m.badRows {
		y.Shape[0]--
	}
	return []skl2go.Output{y, p}, nil
}

func TestPredictInChunks(t *testing.T) {
	tests := []struct {
		name          string
		rows, chunk   int
		badRows       int
		failWaitAfter int // wait fails on this call (1-based); 0: never
		wantRuns      []int
		wantErr       bool
	}{
		{"even chunks", 12, 4, 0, 0, []int{4, 4, 4}, false},
		{"a short last chunk", 10, 3, 0, 0, []int{3, 3, 3, 1}, false},
		{"row by row", 3, 1, 0, 0, []int{1, 1, 1}, false},
		{"chunk larger than the batch", 5, 16, 0, 0, []int{5}, false},
		{"no chunking", 5, 0, 0, 0, []int{5}, false},
		{"one row", 1, 16, 0, 0, []int{1}, false},
		{"wait fails before the third chunk", 10, 3, 0, 3, []int{3, 3}, true},
		{"wait fails before the first", 10, 3, 0, 1, nil, true},
		{"an output of the wrong length", 10, 3, 1, 0, []int{3, 3, 3, 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch := &skl2go.Batch{Rows: tt.rows, Columns: []skl2go.Column{{Name: "x", Type: skl2go.Int64}}}
			for i := range tt.rows {
				batch.Columns[0].Int64 = append(batch.Columns[0].Int64, int64(i+1))
			}
			model := &rowModel{badRows: tt.badRows}
			waits := 0
			wait := func(context.Context) error {
				waits++
				if waits == tt.failWaitAfter {
					return context.DeadlineExceeded
				}
				return nil
			}
			got, err := skl2go.PredictInChunks(context.Background(), model, batch, tt.chunk, wait)
			if !slices.Equal(model.runs, tt.wantRuns) {
				t.Errorf("runs of %v rows, want %v", model.runs, tt.wantRuns)
			}
			if waits != len(model.runs)+btoi(tt.failWaitAfter > 0) {
				t.Errorf("wait called %d times for %d runs", waits, len(model.runs))
			}
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			whole, _ := (&rowModel{}).Predict(context.Background(), batch) // one run of every row
			if len(got) != len(whole) {
				t.Fatalf("%d outputs, want %d", len(got), len(whole))
			}
			for o := range whole {
				if got[o].Name != whole[o].Name || !slices.Equal(got[o].Shape, whole[o].Shape) ||
					!slices.Equal(got[o].Float64, whole[o].Float64) || !slices.Equal(got[o].Float32, whole[o].Float32) {
					t.Errorf("output %d = %+v, want %+v", o, got[o], whole[o])
				}
			}
			if len(batch.Columns[0].Int64) != tt.rows {
				t.Errorf("the batch changed: %d values", len(batch.Columns[0].Int64))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestBatchSlice(t *testing.T) {
	batch := &skl2go.Batch{Rows: 4, Columns: []skl2go.Column{
		{Name: "a", Type: skl2go.Int64, Values: skl2go.Values{Int64: []int64{1, 2, 3, 4}}},
		{Name: "s", Type: skl2go.String, Values: skl2go.Values{String: []string{"p", "q", "r", "s"}}},
		{Name: "w", Type: skl2go.Float32, Values: skl2go.Values{Float32: []float32{1, 1, 2, 2, 3, 3, 4, 4}}}, // two per row
	}}
	tests := []struct {
		start, end int
		a          []int64
		s          []string
		w          []float32
	}{
		{0, 4, []int64{1, 2, 3, 4}, []string{"p", "q", "r", "s"}, []float32{1, 1, 2, 2, 3, 3, 4, 4}},
		{1, 3, []int64{2, 3}, []string{"q", "r"}, []float32{2, 2, 3, 3}},
		{3, 4, []int64{4}, []string{"s"}, []float32{4, 4}},
		{2, 2, []int64{}, []string{}, []float32{}},
	}
	for _, tt := range tests {
		got := batch.Slice(tt.start, tt.end)
		if got.Rows != tt.end-tt.start || !slices.Equal(got.Columns[0].Int64, tt.a) ||
			!slices.Equal(got.Columns[1].String, tt.s) || !slices.Equal(got.Columns[2].Float32, tt.w) {
			t.Errorf("Slice(%d, %d) = %+v", tt.start, tt.end, got)
		}
		if got.Columns[0].Name != "a" || got.Columns[2].Type != skl2go.Float32 {
			t.Errorf("Slice(%d, %d) lost the columns' names or types", tt.start, tt.end)
		}
		got.Columns[0].Int64 = append(got.Columns[0].Int64, 99) // capped: cannot write into the next row
	}
	if !slices.Equal(batch.Columns[0].Int64, []int64{1, 2, 3, 4}) {
		t.Errorf("appending to a slice changed the batch: %v", batch.Columns[0].Int64)
	}
}
