package http

import (
	"context"
	"net/http"
	"time"

	"skl2go"
)

// serveInference finds the model, lets serve decode, run and encode the
// request, writes serve's error if any, and records the request. It is the
// one path both REST protocols take to a model; gRPC takes the same steps
// (AcquireInference, FinishInference) through skl2go.InferenceSteps.
func (s *Server) serveInference(w http.ResponseWriter, r *http.Request, name string, version int, protocol string,
	serve func(http.ResponseWriter, *http.Request, skl2go.Model, *skl2go.Inference) error) {
	start := time.Now()
	requestID, err := inferenceRequestID(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The version is held until the answer is written: a newer version may
	// replace it meanwhile, but it is not closed before release.
	model, release, assignment, err := s.AcquireInference(name, version, requestID, r.Header.Get)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	inf := &skl2go.Inference{Meta: model.Metadata(), Protocol: protocol, Start: start, Assignment: assignment, RequestID: requestID}
	setAnswerHeaders(w, inf)
	err = serve(w, r, model, inf)
	if err != nil {
		s.writeError(w, r, err)
	}
	s.FinishInference(r.Context(), inf, time.Now(), err)
}

// FinishInference implements skl2go.InferenceSteps: the request's metrics
// (labelled by its protocol) and its variant's; for an answer, the
// inference log's record (sampled) and the experiment's mirror run.
func (s *Server) FinishInference(ctx context.Context, inf *skl2go.Inference, end time.Time, err error) {
	s.shadow.inflight.Add(-1) // from AcquireInference
	if err != nil {
		s.metrics.observeFailure(inf, skl2go.ErrorCode(err))
		s.metrics.experiment.observe(inf, end, err)
		return
	}
	s.metrics.observeSuccess(inf, end)
	s.metrics.experiment.observe(inf, end, nil)
	logged := s.logInference(ctx, inf)
	s.shadow.offer(inf, logged)
}
