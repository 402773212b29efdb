package http

import (
	"context"
	"net/http"
	"time"

	"skl2go"
)

// inference is what the metrics record about one predict (v1) or infer
// (v2) request for a loaded model.
type inference struct {
	meta     *skl2go.Metadata
	protocol string    // "v1" or "v2"
	start    time.Time // request handling began
	decoded  time.Time // the body was decoded into a batch
	computed time.Time // the model returned (zero if it never ran)
	rows     int

	// For the inference log (inference_log.go).
	requestID string
	batch     *skl2go.Batch
	outputs   []skl2go.Output
}

// serveInference finds the model, lets serve decode, run and encode the
// request, writes serve's error if any, and records the request in the
// metrics. It is the one path both protocols take to a model.
func (s *Server) serveInference(w http.ResponseWriter, r *http.Request, name string, version int, protocol string,
	serve func(http.ResponseWriter, *http.Request, skl2go.Model, *inference) error) {
	// The version is held until the answer is written: a newer version may
	// replace it meanwhile, but it is not closed before release.
	model, release, err := s.store.Acquire(name, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	inf := &inference{meta: model.Metadata(), protocol: protocol, start: time.Now()}
	if inf.requestID, err = inferenceRequestID(w, r); err == nil {
		err = serve(w, r, model, inf)
	}
	if err != nil {
		s.writeError(w, r, err)
		s.metrics.observeFailure(inf, skl2go.ErrorCode(err))
		return
	}
	s.metrics.observeSuccess(inf, time.Now())
	s.logInference(r.Context(), inf)
}

// run predicts a decoded batch with the model, timing it.
func (inf *inference) run(ctx context.Context, model skl2go.Model, batch *skl2go.Batch) ([]skl2go.Output, error) {
	inf.decoded = time.Now()
	inf.rows, inf.batch = batch.Rows, batch
	outputs, err := model.Predict(ctx, batch)
	inf.outputs = outputs
	inf.computed = time.Now()
	if err != nil && ctx.Err() != nil {
		return nil, skl2go.Errorf(skl2go.EUNAVAILABLE, "request cancelled")
	}
	return outputs, err
}
