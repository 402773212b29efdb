package http

import (
	"context"
	"net/http"
	"strconv"
	"strings"
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
	if err = s.late(r, inf); err == nil {
		err = serve(w, r, model, inf)
	}
	if err != nil {
		s.writeError(w, r, err)
	}
	s.FinishInference(r.Context(), inf, time.Now(), err)
}

// late refuses a request nginx received more than the deadline ago (its
// X-Request-Start, "t=" and nginx's $msec: seconds since the epoch, with
// milliseconds), before its body is read. The header is advisory: nginx
// always sets it, a direct caller rarely does; one that does not parse, or
// that lies in the future (clocks apart), is ignored. Behind nginx on
// other machines the clocks must agree to well within the deadline (NTP).
func (s *Server) late(r *http.Request, inf *skl2go.Inference) error {
	if s.config.Deadline <= 0 {
		return nil
	}
	received, ok := requestStart(r.Header.Get("X-Request-Start"))
	if !ok {
		return nil
	}
	age := inf.Start.Sub(received)
	if age <= s.config.Deadline {
		return nil
	}
	if s.config.Late != nil {
		s.config.Late(inf.Meta)
	}
	return skl2go.Errorf(skl2go.EOVERLOADED, "server overloaded: the request reached this replica %s after nginx passed it on, over the %s deadline; retry shortly",
		age.Round(time.Millisecond), s.config.Deadline)
}

// requestStart parses an X-Request-Start header of the form "t=SECONDS" or
// "t=SECONDS.FRACTION" (nginx's $msec has milliseconds).
func requestStart(header string) (time.Time, bool) {
	value, ok := strings.CutPrefix(header, "t=")
	if !ok {
		return time.Time{}, false
	}
	whole, fraction, _ := strings.Cut(value, ".")
	if !allDigits(whole) || len(whole) > 12 || len(fraction) > 9 || (fraction != "" && !allDigits(fraction)) {
		return time.Time{}, false
	}
	sec, _ := strconv.ParseInt(whole, 10, 64)
	var nsec int64
	if fraction != "" {
		nsec, _ = strconv.ParseInt(fraction+strings.Repeat("0", 9-len(fraction)), 10, 64)
	}
	return time.Unix(sec, nsec), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
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
