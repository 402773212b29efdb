package tfserving

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"

	"skl2go"
	"skl2go/internal/jsonwire"
)

// DecodeEvent reads one streamed event, a JSON object holding the fields of
// one instance of a predict request plus skl2go.EventIDField (and optionally
// skl2go.EventTimeField), and appends its inputs to batch as one more row.
// It validates exactly as DecodeInstances does, with the same messages
// ("event.trip_distance: 2000 is out of range: …"); on error batch is left
// as it was. batch must have been made for this model (Metadata.NewBatch).
func DecodeEvent(data []byte, meta *skl2go.Metadata, batch *skl2go.Batch) (skl2go.Event, error) {
	if ev, ok := scanEvent(data, meta, batch); ok {
		return ev, nil
	}
	batch.Truncate(batch.Rows)
	var ev skl2go.Event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := decodeEvent(dec, meta, batch, &ev)
	if err == nil {
		if _, err = dec.Token(); !errors.Is(err, io.EOF) {
			if err == nil {
				err = skl2go.Errorf(skl2go.EINVALID, "malformed JSON: data after the event at byte %d", dec.InputOffset())
			} else {
				err = jsonwire.SyntaxError(dec, err)
			}
		} else {
			err = nil
		}
	}
	if err != nil {
		batch.Truncate(batch.Rows)
		var e *skl2go.Error
		if !errors.As(err, &e) { // the record is all in memory: any decoder error is about its JSON
			err = skl2go.Errorf(skl2go.EINVALID, "malformed JSON: %v", err)
		}
		return skl2go.Event{}, err
	}
	batch.Rows++
	return ev, nil
}

// scanEvent is DecodeEvent's fast path (the scanner of scanRequest): it
// accepts a well-formed event of plain ASCII keys and values and no
// event_time, and leaves anything else, valid or not, to the token decoder,
// which gives the verdict and the message. On false the caller truncates
// the batch.
func scanEvent(data []byte, meta *skl2go.Metadata, batch *skl2go.Batch) (skl2go.Event, bool) {
	var ev skl2go.Event
	if len(meta.Inputs) > 64 {
		return ev, false // seen is a 64-bit set
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
		if string(key) == skl2go.EventIDField {
			if ev.ID != nil || !s.eventID(&ev) {
				return ev, false
			}
		} else {
			i, known := meta.InputIndex(unsafeString(key))
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
	if s.pos != len(s.data) || ev.ID == nil || seen != uint64(1)<<len(meta.Inputs)-1 {
		return ev, false
	}
	batch.Rows++
	return ev, true
}

// eventID reads a ride id the fast way: a non-empty plain string with
// nothing encoding/json would escape, or an integer.
func (s *scanner) eventID(ev *skl2go.Event) bool {
	s.skipSpace()
	start := s.pos
	if str, ok := s.plainString(); ok {
		if len(str) == 0 || bytes.ContainsAny(str, "<>&") {
			return false
		}
	} else if num, ok := s.number(); !ok || bytes.ContainsAny(num, ".eE") {
		return false
	} else if _, err := skl2go.ParseInteger(string(num), 64); err != nil {
		return false
	}
	ev.ID = append(json.RawMessage(nil), s.data[start:s.pos]...)
	return true
}

func decodeEvent(dec *json.Decoder, meta *skl2go.Metadata, batch *skl2go.Batch, ev *skl2go.Event) error {
	const where = "event"
	if err := jsonwire.ExpectDelim(dec, '{', where, "an object"); err != nil {
		return err
	}
	seen := make([]bool, len(meta.Inputs))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonwire.SyntaxError(dec, err)
		}
		key := tok.(string)
		switch key {
		case skl2go.EventIDField:
			if ev.ID != nil {
				return skl2go.Errorf(skl2go.EINVALID, "%s.%s: given twice", where, key)
			}
			if ev.ID, err = decodeEventID(dec, where+"."+key); err != nil {
				return err
			}
			continue
		case skl2go.EventTimeField:
			if !ev.Time.IsZero() {
				return skl2go.Errorf(skl2go.EINVALID, "%s.%s: given twice", where, key)
			}
			if ev.Time, err = decodeEventTime(dec, where+"."+key); err != nil {
				return err
			}
			continue
		}
		i, ok := meta.InputIndex(key)
		if !ok {
			return skl2go.Errorf(skl2go.EINVALID, "%s.%s: unknown field (model %s expects %s, %s and optionally %s)",
				where, key, meta.Name, skl2go.EventIDField, meta.InputNames(), skl2go.EventTimeField)
		}
		if seen[i] {
			return skl2go.Errorf(skl2go.EINVALID, "%s.%s: given twice", where, key)
		}
		seen[i] = true
		if err := decodeValue(dec, &batch.Columns[i], where+"."+key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return jsonwire.SyntaxError(dec, err)
	}
	if ev.ID == nil {
		return skl2go.Errorf(skl2go.EINVALID, "%s.%s: missing", where, skl2go.EventIDField)
	}
	for i, ok := range seen {
		if !ok {
			return skl2go.Errorf(skl2go.EINVALID, "%s.%s: missing", where, meta.Inputs[i].Name)
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
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: must not be empty", where)
		}
		id, _ := json.Marshal(v) // a string always marshals
		return id, nil
	case json.Number:
		if _, err := skl2go.ParseInteger(string(v), 64); err != nil {
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: %v", where, err)
		}
		return json.RawMessage(v), nil
	}
	return nil, skl2go.Errorf(skl2go.EINVALID, "%s: expected a string or an integer, got %s", where, jsonwire.DescribeToken(tok))
}

func decodeEventTime(dec *json.Decoder, where string) (time.Time, error) {
	tok, err := dec.Token()
	if err != nil {
		return time.Time{}, valueSyntaxError(dec, err, where)
	}
	s, ok := tok.(string)
	if !ok {
		return time.Time{}, skl2go.Errorf(skl2go.EINVALID, "%s: expected an RFC 3339 time string such as 2026-12-01T08:00:00Z, got %s",
			where, jsonwire.DescribeToken(tok))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, skl2go.Errorf(skl2go.EINVALID, "%s: %s is not an RFC 3339 time such as 2026-12-01T08:00:00Z", where, skl2go.Quote(s))
	}
	return t, nil
}
