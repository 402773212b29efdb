// Package events scores streamed events (ride events from Kafka, or records
// of a Kinesis-shaped event) with a model of the store: each event is the
// request record of one instance plus its id (tfserving.DecodeEvent);
// a batch of events is one Predict on the latest version served, through
// whatever the store's models are wrapped in (the limiter and the dynamic
// batcher), and each scorable event gets one prediction record:
//
//	{"ride_id": "r-1", "prediction": 21.51, "model": "trip_duration", "version": 3, "variant": null}
//
// An event that cannot be scored (not JSON, a missing or wrong field, a
// value out of range, an output JSON cannot carry) gets its error instead;
// it never fails the others.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"skl2go"
	"skl2go/tfserving"
)

// Scorer scores events with the latest served version of one model.
type Scorer struct {
	Store skl2go.ModelStore
	Model string
	// Variant labels every prediction record ("" writes null): which
	// deployment of the model answered, when several consume one stream.
	Variant string
	// Backoff is the wait before trying again when the model is missing,
	// overloaded or being swapped (default 100ms).
	Backoff time.Duration
	Logger  *slog.Logger
}

// Result is the outcome of one event.
type Result struct {
	Event   skl2go.Event // the id and time the event carried (zero when it did not decode)
	Record  []byte       // the prediction record, when Err is nil
	Version int          // the model version that scored it
	Err     error        // why it could not be scored: an *skl2go.Error
}

// Score scores every event, in order. It returns an error only when ctx
// ends while the model cannot be used (not served, overloaded, unloading):
// then no event was scored, and the caller must not commit them.
func (s *Scorer) Score(ctx context.Context, events [][]byte) ([]Result, error) {
	for attempt := 0; ; attempt++ {
		results, err := s.score(ctx, events)
		if err == nil {
			return results, nil
		}
		if attempt == 0 || attempt%50 == 0 {
			s.logger().Warn("cannot score events yet; retrying", "model", s.Model, "events", len(events), "err", skl2go.ErrorMessage(err), "attempt", attempt+1)
		}
		backoff := s.Backoff
		if backoff <= 0 {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("scoring %d events with %s: %w (last error: %v)", len(events), s.Model, ctx.Err(), err)
		case <-time.After(backoff):
		}
	}
}

// retryable reports whether err is the model's state rather than the
// events': the model is not served (yet), overloaded or being swapped.
func retryable(err error) bool {
	switch skl2go.ErrorCode(err) {
	case skl2go.ENOTFOUND, skl2go.EUNAVAILABLE, skl2go.EOVERLOADED:
		return true
	}
	return false
}

// score is one attempt: a retryable error means nothing was scored.
func (s *Scorer) score(ctx context.Context, events [][]byte) ([]Result, error) {
	model, release, err := s.Store.Acquire(s.Model, 0)
	if err != nil {
		return nil, err
	}
	defer release()
	meta := model.Metadata()
	results := make([]Result, len(events))
	batch := meta.NewBatch(len(events))
	rows := make([]int, 0, len(events)) // the event of each batch row
	for i, data := range events {
		results[i].Version = meta.Version
		results[i].Event, results[i].Err = tfserving.DecodeEvent(data, meta, batch)
		if results[i].Err == nil {
			rows = append(rows, i)
		}
	}
	if batch.Rows == 0 {
		return results, nil
	}
	outputs, err := model.Predict(ctx, batch)
	switch {
	case err == nil:
		for row, i := range rows {
			results[i].Record, results[i].Err = s.record(meta, outputs, row, results[i].Event.ID)
		}
	case retryable(err) || ctx.Err() != nil:
		return nil, err
	default:
		// A run failed as a whole: find the events it fails on, one by one.
		s.logger().Warn("batch prediction failed; scoring its events one by one", "model", meta.Name, "version", meta.Version,
			"events", batch.Rows, "err", err.Error())
		for row, i := range rows {
			out, err := model.Predict(ctx, rowOf(batch, row))
			if err != nil {
				if retryable(err) || ctx.Err() != nil {
					return nil, err
				}
				results[i].Err = scoringError(err)
				continue
			}
			results[i].Record, results[i].Err = s.record(meta, out, 0, results[i].Event.ID)
		}
	}
	return results, nil
}

// record writes one event's prediction record.
func (s *Scorer) record(meta *skl2go.Metadata, outputs []skl2go.Output, row int, id json.RawMessage) ([]byte, error) {
	buf := make([]byte, 0, 96+len(id)+len(meta.Name)+len(s.Variant))
	buf = append(buf, `{"ride_id":`...)
	buf = append(buf, id...)
	buf = append(buf, `,"prediction":`...)
	buf, err := tfserving.AppendPrediction(buf, outputs, row)
	if err != nil {
		return nil, scoringError(err)
	}
	buf = append(buf, `,"model":`...)
	buf = strconv.AppendQuote(buf, meta.Name) // a valid model name is plain ASCII
	buf = append(buf, `,"version":`...)
	buf = strconv.AppendInt(buf, int64(meta.Version), 10)
	buf = append(buf, `,"variant":`...)
	if s.Variant == "" {
		buf = append(buf, "null"...)
	} else {
		v, _ := json.Marshal(s.Variant) // a string always marshals
		buf = append(buf, v...)
	}
	return append(buf, '}'), nil
}

// scoringError keeps client errors as they are and names anything else.
func scoringError(err error) error {
	var e *skl2go.Error
	if errors.As(err, &e) {
		return e
	}
	return skl2go.Errorf(skl2go.EINTERNAL, "the model failed on this event: %v", err)
}

// rowOf returns row r of batch as a batch of one, sharing its memory.
func rowOf(batch *skl2go.Batch, r int) *skl2go.Batch {
	one := &skl2go.Batch{Rows: 1, Columns: make([]skl2go.Column, len(batch.Columns))}
	for i, c := range batch.Columns {
		one.Columns[i] = skl2go.Column{Name: c.Name, Type: c.Type, Range: c.Range, Values: c.Values.Slice(c.Type, r, r+1)}
	}
	return one
}

func (s *Scorer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
