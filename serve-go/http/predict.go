package http

import (
	"bytes"
	"net/http"
	"strconv"

	"skl2go"
	"skl2go/tfserving"
)

// handlePredict serves POST /v1/models/{name}[/versions/{v}]:predict.
func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request, name string, version int) {
	s.serveInference(w, r, name, version, "v1", s.predict)
}

// predict decodes, runs and encodes one v1 predict request.
func (s *Server) predict(w http.ResponseWriter, r *http.Request, model skl2go.Model, inf *skl2go.Inference) error {
	if err := tfserving.CheckContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	buf := s.bodies.Get().(*bytes.Buffer)
	defer s.releaseBody(buf)
	body, err := readBodyInto(buf, w, r, s.config.MaxBodyBytes)
	if err != nil {
		return err
	}
	meta := model.Metadata()
	req, err := tfserving.DecodeRequest(body, meta, s.config.MaxRows)
	if err != nil {
		return err
	}
	outputs, err := inf.Run(r.Context(), model, req.Batch)
	if err != nil {
		return err
	}
	resp, err := tfserving.AppendResponse(make([]byte, 0, 64+16*req.Batch.Rows), req, outputs, meta.Name, meta.Version)
	if err != nil {
		return err
	}
	resp = appendVariant(resp, inf)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.WriteHeader(http.StatusOK)
	w.Write(resp)
	return nil
}
