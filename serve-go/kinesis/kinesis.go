// Package kinesis is the Lambda-style entry point for ride events on AWS
// Kinesis, as the course deploys its model: a handler that takes the event
// Lambda delivers for a Kinesis stream (Records[].kinesis.data, base64 of
// the JSON ride event) and returns the predictions, scored exactly like
// the Kafka consumer's (package events). No AWS SDK: the event is plain
// JSON, and putting the predictions on an output stream is the caller's.
package kinesis

import (
	"context"
	"encoding/json"
	"fmt"

	"skl2go"
	"skl2go/events"
)

// Event is the part of a Lambda Kinesis event the handler reads.
type Event struct {
	Records []Record `json:"Records"`
}

// Record is one Kinesis record of an Event.
type Record struct {
	EventID string `json:"eventID"`
	Kinesis struct {
		PartitionKey   string `json:"partitionKey"`
		SequenceNumber string `json:"sequenceNumber"`
		Data           []byte `json:"data"` // base64 in the JSON: encoding/json decodes it
	} `json:"kinesis"`
}

// Response is the handler's answer: one prediction record per scorable
// event (the Kafka consumer's output format), and the others with their
// error and original data, in the order of the event's records.
type Response struct {
	Predictions []json.RawMessage `json:"predictions"`
	DeadLetters []DeadLetter      `json:"dead_letters"`
}

// DeadLetter is an event that could not be scored. Returning it, rather
// than failing the invocation, keeps Lambda from retrying a record that
// will never score.
type DeadLetter struct {
	SequenceNumber string `json:"sequence_number"`
	Error          string `json:"error"`
	Code           string `json:"code"`
	Data           []byte `json:"data"` // base64, as received
}

// Handle scores a Kinesis event. It fails only when the event itself is
// not a Kinesis event or the model cannot be used (ctx ended while it was
// unavailable): Lambda retries the whole batch then.
func Handle(ctx context.Context, scorer *events.Scorer, payload []byte) (*Response, error) {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, skl2go.Errorf(skl2go.EINVALID, "not a Kinesis event (Records[].kinesis.data, base64): %v", err)
	}
	values := make([][]byte, len(ev.Records))
	for i, r := range ev.Records {
		values[i] = r.Kinesis.Data
	}
	results, err := scorer.Score(ctx, values)
	if err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	resp := &Response{Predictions: []json.RawMessage{}, DeadLetters: []DeadLetter{}}
	for i, res := range results {
		if res.Err != nil {
			resp.DeadLetters = append(resp.DeadLetters, DeadLetter{SequenceNumber: ev.Records[i].Kinesis.SequenceNumber,
				Error: skl2go.ErrorMessage(res.Err), Code: skl2go.ErrorCode(res.Err), Data: values[i]})
			continue
		}
		resp.Predictions = append(resp.Predictions, res.Record)
	}
	return resp, nil
}
