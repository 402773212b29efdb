package skl2go

import (
	"context"
	"time"
)

// Inference is what is recorded about one inference request for a loaded
// model, whatever the transport: when its handling began, when its input
// was decoded into a batch of Rows rows, and when the model returned; the
// request's id and experiment variant; and its rows and answer, for the
// inference log and the experiment's mirror.
type Inference struct {
	Meta     *Metadata
	Protocol string // "v1", "v2" (REST) or "grpc"
	Start    time.Time
	Decoded  time.Time
	Computed time.Time // zero if the model never ran
	Rows     int

	RequestID  string      // the client's id, checked (RequestID), or one made for the request
	Assignment *Assignment // the experiment variant that answers; nil when none

	// Batch and Outputs are the request's own (decoded and produced for it
	// alone), so the inference log and the mirror keep them without a copy.
	Batch   *Batch
	Outputs []Output
}

// Run predicts a decoded batch with the model, timing it and keeping the
// batch and outputs. A prediction cut short because the request was
// cancelled is EUNAVAILABLE.
func (inf *Inference) Run(ctx context.Context, model Model, batch *Batch) ([]Output, error) {
	inf.Decoded = time.Now()
	inf.Rows = batch.Rows
	outputs, err := model.Predict(ctx, batch)
	inf.Computed = time.Now()
	inf.Batch, inf.Outputs = batch, outputs
	if err != nil && ctx.Err() != nil {
		return nil, Errorf(EUNAVAILABLE, "request cancelled")
	}
	return outputs, err
}

// InferenceSteps are the steps every transport takes around one inference
// request, so that REST and gRPC answer with the same versions and
// variants and record the same metrics, log and mirror runs. Package http
// implements them; package grpc calls them.
type InferenceSteps interface {
	// AcquireInference acquires the version that answers a request for the
	// model: version when pinned (not 0), else the variant an experiment
	// assigns by the request's key (its sticky header, looked up by header, else
	// requestID), else the latest. release frees the version once the
	// answer is made.
	AcquireInference(name string, version int, requestID string, header func(name string) string) (model Model, release func(), a *Assignment, err error)
	// FinishInference records a request answered at end, or failed with
	// err: the metrics, the experiment's, and for an answer the inference
	// log (sampled) and the experiment's mirror run. It must follow every
	// AcquireInference that succeeded, exactly once: between the two the
	// request is in flight, and the mirror waits for none to be.
	FinishInference(ctx context.Context, inf *Inference, end time.Time, err error)
}
