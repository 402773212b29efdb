package skl2go

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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

// Event is what a streamed event says besides the model's inputs.
type Event struct {
	ID   json.RawMessage // the id as sent: a JSON string or integer
	Time time.Time       // zero when the event has no EventTimeField
}

// DecodeEvent reads one streamed event, a JSON object holding the fields of
// one instance of a predict request plus EventIDField (and optionally
// EventTimeField), and appends its inputs to batch as one more row. It
// validates exactly as DecodeInstances does, with the same messages
// ("event.trip_distance: 2000 is out of range: …"); on error batch is left
// as it was. batch must have been made for this model (NewBatch).
func (m *Metadata) DecodeEvent(data []byte, batch *Batch) (Event, error) {
	if ev, ok := m.scanEvent(data, batch); ok {
		return ev, nil
	}
	batch.truncate(batch.Rows)
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := m.decodeEvent(dec, batch, &ev)
	if err == nil {
		if _, err = dec.Token(); !errors.Is(err, io.EOF) {
			if err == nil {
				err = Errorf(EINVALID, "malformed JSON: data after the event at byte %d", dec.InputOffset())
			} else {
				err = syntaxError(dec, err)
			}
		} else {
			err = nil
		}
	}
	if err != nil {
		batch.truncate(batch.Rows)
		var e *Error
		if !errors.As(err, &e) { // the record is all in memory: any decoder error is about its JSON
			err = Errorf(EINVALID, "malformed JSON: %v", err)
		}
		return Event{}, err
	}
	batch.Rows++
	return ev, nil
}

// scanEvent is DecodeEvent's fast path (the scanner of ScanRequest): it
// accepts a well-formed event of plain ASCII keys and values and no
// event_time, and leaves anything else, valid or not, to the token decoder,
// which gives the verdict and the message. On false the caller truncates
// the batch.
func (m *Metadata) scanEvent(data []byte, batch *Batch) (Event, bool) {
	var ev Event
	if len(m.Inputs) > 64 {
		return ev, false
	}
	s := scanner{data: data}
	if !s.expect('{') {
		return ev, false
	}
	var seen uint64
	for {
		key, ok := s.plainString()
		if !ok || !s.expect(':') {
			return ev, false
		}
		if string(key) == EventIDField {
			if ev.ID != nil || !s.eventID(&ev) {
				return ev, false
			}
		} else {
			i, known := m.inputIndex[unsafeString(key)]
			if !known || seen&(1<<i) != 0 || !s.value(&batch.Columns[i]) {
				return ev, false
			}
			seen |= 1 << i
		}
		if s.expect(',') {
			continue
		}
		if !s.expect('}') {
			return ev, false
		}
		break
	}
	s.skipSpace()
	if s.pos != len(s.data) || ev.ID == nil || seen != uint64(1)<<len(m.Inputs)-1 {
		return ev, false
	}
	batch.Rows++
	return ev, true
}

// eventID reads a ride id the fast way: a non-empty plain string with
// nothing encoding/json would escape, or an integer.
func (s *scanner) eventID(ev *Event) bool {
	s.skipSpace()
	start := s.pos
	if str, ok := s.plainString(); ok {
		if len(str) == 0 || bytes.ContainsAny(str, "<>&") {
			return false
		}
	} else if num, ok := s.number(); !ok || bytes.ContainsAny(num, ".eE") {
		return false
	} else if _, err := parseInteger(string(num), 64); err != nil {
		return false
	}
	ev.ID = append(json.RawMessage(nil), s.data[start:s.pos]...)
	return true
}

func (m *Metadata) decodeEvent(dec *json.Decoder, batch *Batch, ev *Event) error {
	const where = "event"
	if err := expectDelim(dec, '{', where, "an object"); err != nil {
		return err
	}
	seen := make([]bool, len(m.Inputs))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(dec, err)
		}
		key := tok.(string)
		switch key {
		case EventIDField:
			if ev.ID != nil {
				return Errorf(EINVALID, "%s.%s: given twice", where, key)
			}
			if ev.ID, err = decodeEventID(dec, where+"."+key); err != nil {
				return err
			}
			continue
		case EventTimeField:
			if !ev.Time.IsZero() {
				return Errorf(EINVALID, "%s.%s: given twice", where, key)
			}
			if ev.Time, err = decodeEventTime(dec, where+"."+key); err != nil {
				return err
			}
			continue
		}
		i, ok := m.inputIndex[key]
		if !ok {
			return Errorf(EINVALID, "%s.%s: unknown field (model %s expects %s, %s and optionally %s)",
				where, key, m.Name, EventIDField, m.InputNames(), EventTimeField)
		}
		if seen[i] {
			return Errorf(EINVALID, "%s.%s: given twice", where, key)
		}
		seen[i] = true
		if err := decodeValue(dec, &batch.Columns[i], where+"."+key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return syntaxError(dec, err)
	}
	if ev.ID == nil {
		return Errorf(EINVALID, "%s.%s: missing", where, EventIDField)
	}
	for i, ok := range seen {
		if !ok {
			return Errorf(EINVALID, "%s.%s: missing", where, m.Inputs[i].Name)
		}
	}
	return nil
}

func decodeEventID(dec *json.Decoder, where string) (json.RawMessage, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, valueSyntaxError(dec, err, where)
	}
	switch v := tok.(type) {
	case string:
		if v == "" {
			return nil, Errorf(EINVALID, "%s: must not be empty", where)
		}
		id, _ := json.Marshal(v) // a string always marshals
		return id, nil
	case json.Number:
		if _, err := parseInteger(string(v), 64); err != nil {
			return nil, Errorf(EINVALID, "%s: %v", where, err)
		}
		return json.RawMessage(v), nil
	}
	return nil, Errorf(EINVALID, "%s: expected a string or an integer, got %s", where, describeToken(tok))
}

func decodeEventTime(dec *json.Decoder, where string) (time.Time, error) {
	tok, err := dec.Token()
	if err != nil {
		return time.Time{}, valueSyntaxError(dec, err, where)
	}
	s, ok := tok.(string)
	if !ok {
		return time.Time{}, Errorf(EINVALID, "%s: expected an RFC 3339 time string such as 2026-12-01T08:00:00Z, got %s", where, describeToken(tok))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, Errorf(EINVALID, "%s: %s is not an RFC 3339 time such as 2026-12-01T08:00:00Z", where, Quote(s))
	}
	return t, nil
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

// truncate drops every column's values past rows (a row half decoded),
// keeping their capacity for the next rows.
func (b *Batch) truncate(rows int) {
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
