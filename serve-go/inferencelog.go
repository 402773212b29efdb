package skl2go

import (
	"context"
	"time"
)

// The CloudEvents types of inference log records (docs/inference-log.md).
const (
	// InferenceEventType is a request the server answered.
	InferenceEventType = "org.skl2go.inference"
	// ShadowEventType is a shadow run: a challenger's answer to a request
	// that another version answered to the client.
	ShadowEventType = "org.skl2go.inference.shadow"
	// ActualEventType is ground truth for a row answered earlier.
	ActualEventType = "org.skl2go.actual"
)

// InferenceRecord is one entry of the inference log: an inference (Type
// InferenceEventType or ShadowEventType, with Inputs and Outputs) or the
// ground truth of earlier rows (ActualEventType, with Actuals; each actual
// becomes a record of its own in the log).
//
// The logger reads Inputs and Outputs after the request is answered: the
// caller hands over values nothing reuses (decoded batches and model
// outputs are fresh per request).
type InferenceRecord struct {
	Type      string
	Time      time.Time // when the request arrived
	RequestID string
	Model     string
	Version   int    // 0: unknown
	Variant   string // the experiment's variant; "" outside experiments
	Latency   time.Duration
	Task      string // Regression or Classification: how Outputs are written

	Inputs  []Column
	Outputs []Output
	Actuals []Actual
}

// Actual is the true outcome of one row of an earlier request, named by
// the request's id and the row's index in it, or by a key of the caller's
// own (a trip id).
type Actual struct {
	RequestID string
	Key       string
	Row       int
	Value     float64
}

// InferenceLogger records inferences and their ground truth off the
// request path. Log never blocks: a record it cannot queue is dropped and
// counted, and it reports false; a request never fails because of the log.
type InferenceLogger interface {
	Log(ctx context.Context, rec *InferenceRecord) bool
}
