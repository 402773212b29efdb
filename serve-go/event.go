package skl2go

import (
	"encoding/json"
	"time"
)

// The fields a streamed event carries besides the model's inputs.
const (
	// EventIDField identifies the event (a ride); it is echoed with the
	// prediction. A JSON string or integer, required.
	EventIDField = "ride_id"
	// EventTimeField is when the event happened, an RFC 3339 string;
	// optional (the stream's own timestamp stands in for it).
	EventTimeField = "event_time"
)

// Event is what a streamed event says besides the model's inputs
// (tfserving.DecodeEvent reads it).
type Event struct {
	ID   json.RawMessage // the id as sent: a JSON string or integer
	Time time.Time       // zero when the event has no EventTimeField
}

// NewBatch returns an empty batch for the model's inputs, with room for rows.
func (m *Metadata) NewBatch(rows int) *Batch {
	batch := &Batch{Columns: make([]Column, len(m.Inputs))}
	for i, in := range m.Inputs {
		batch.Columns[i] = in.NewColumn()
		batch.Columns[i].Grow(in.Type, rows)
	}
	return batch
}

// Truncate drops every column's values past rows (a row half decoded),
// keeping their capacity for the next rows.
func (b *Batch) Truncate(rows int) {
	for i := range b.Columns {
		v := &b.Columns[i].Values
		v.Float32 = v.Float32[:min(rows, len(v.Float32))]
		v.Float64 = v.Float64[:min(rows, len(v.Float64))]
		v.Int64 = v.Int64[:min(rows, len(v.Int64))]
		v.Int32 = v.Int32[:min(rows, len(v.Int32))]
		v.String = v.String[:min(rows, len(v.String))]
		v.Bool = v.Bool[:min(rows, len(v.Bool))]
	}
}
