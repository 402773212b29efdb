package skl2go

import "time"

// Inference is what is recorded about one inference request for a loaded
// model, whatever the transport: when its handling began, when its input
// was decoded into a batch of Rows rows, and when the model returned.
type Inference struct {
	Meta     *Metadata
	Protocol string // "v1", "v2" (REST) or "grpc"
	Start    time.Time
	Decoded  time.Time
	Computed time.Time // zero if the model never ran
	Rows     int
}

// InferenceObserver records inference requests: package http implements it
// with its Prometheus series, which every transport shares, labelled by
// protocol.
type InferenceObserver interface {
	// ObserveInference records a request answered at end, or failed with
	// err (its error code is the reason).
	ObserveInference(inf *Inference, end time.Time, err error)
}
