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

	requestID  string             // X-Request-Id, checked, or a new one (inference_log.go)
	assignment *skl2go.Assignment // the experiment variant, nil when none (experiment.go)
	// The rows and answer, for the inference log and the experiment's mirror.
	batch   *skl2go.Batch
	outputs []skl2go.Output
}

// serveInference finds the model, lets serve decode, run and encode the
// request, writes serve's error if any, and records the request in the
// metrics. It is the one path both protocols take to a model.
func (s *Server) serveInference(w http.ResponseWriter, r *http.Request, name string, version int, protocol string,
	serve func(http.ResponseWriter, *http.Request, skl2go.Model, *inference) error) {
	// The version is held until the answer is written: a newer version may
	// replace it meanwhile, but it is not closed before release.
	start := time.Now()
	requestID, err := inferenceRequestID(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	model, release, assignment, err := s.acquireAssigned(r, name, version, requestID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	inf := &inference{meta: model.Metadata(), protocol: protocol, start: start, assignment: assignment, requestID: requestID}
	setAnswerHeaders(w, inf)
	if err := serve(w, r, model, inf); err != nil {
		s.writeError(w, r, err)
		s.metrics.observeFailure(inf, skl2go.ErrorCode(err))
		s.metrics.experiment.observe(inf, time.Now(), err)
		return
	}
	end := time.Now()
	s.metrics.observeSuccess(inf, end)
	s.metrics.experiment.observe(inf, end, nil)
	logged := s.logInference(r.Context(), inf)
	s.shadow.offer(inf, logged)
}

// run predicts a decoded batch with the model, timing it.
func (inf *inference) run(ctx context.Context, model skl2go.Model, batch *skl2go.Batch) ([]skl2go.Output, error) {
	inf.decoded = time.Now()
	inf.rows = batch.Rows
	outputs, err := model.Predict(ctx, batch)
	inf.computed = time.Now()
	inf.batch, inf.outputs = batch, outputs
	if err != nil && ctx.Err() != nil {
		return nil, skl2go.Errorf(skl2go.EUNAVAILABLE, "request cancelled")
	}
	return outputs, err
}
