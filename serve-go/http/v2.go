package http

import (
	"bytes"
	"net/http"
	"runtime/debug"
	"strconv"

	"skl2go"
	"skl2go/oip"
)

// The Open Inference Protocol (KServe V2) REST API beside the v1 predict
// API: server and model metadata, health, and inference with JSON or binary
// tensor data. Package oip owns the documents and tensor encodings; these
// handlers own the transport.

func (s *Server) handleV2ServerMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, oip.ServerMetadata{Name: "skl2go", Version: s.version, Extensions: oip.Extensions})
}

// handleV2Live answers 200 {"live": true} while the process runs.
func (s *Server) handleV2Live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, oip.Live{Live: true})
}

// handleV2Ready answers 200 {"ready": true} when ready; "not ready" is a
// 4xx in the protocol (400, as Triton answers), where /readyz answers 503
// for load balancers.
func (s *Server) handleV2Ready(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "server not ready"})
		return
	}
	writeJSON(w, http.StatusOK, oip.Ready{Ready: true})
}

// handleV2ModelReady answers 200 {"name": …, "ready": true} when the model
// (version) is loaded and the server is ready, 404 for a model or version
// that is not loaded.
func (s *Server) handleV2ModelReady(w http.ResponseWriter, r *http.Request, name string, version int) {
	_, release, err := s.store.Acquire(name, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	release()
	if !s.ready.Load() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "server not ready"})
		return
	}
	writeJSON(w, http.StatusOK, oip.ModelReady{Name: name, Ready: true})
}

func (s *Server) handleV2ModelMetadata(w http.ResponseWriter, r *http.Request, name string, version int) {
	model, release, err := s.store.Acquire(name, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	meta := model.Metadata()
	var versions []int
	for _, m := range s.store.Models() {
		if m.Name == meta.Name {
			versions = m.Versions
		}
	}
	writeJSON(w, http.StatusOK, oip.NewModelMetadata(meta, versions))
}

// handleV2Infer serves POST /v2/models/{name}[/versions/{v}]/infer.
func (s *Server) handleV2Infer(w http.ResponseWriter, r *http.Request, name string, version int) {
	s.serveInference(w, r, name, version, "v2", s.infer)
}

// infer decodes, runs and encodes one V2 inference request.
func (s *Server) infer(w http.ResponseWriter, r *http.Request, model skl2go.Model, inf *skl2go.Inference) error {
	if err := oip.CheckContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	buf := s.bodies.Get().(*bytes.Buffer)
	defer s.releaseBody(buf)
	body, err := readBodyInto(buf, w, r, s.config.MaxBodyBytes)
	if err != nil {
		return err
	}
	headerLen, err := oip.ParseHeaderLength(r.Header.Get(oip.HeaderLength), len(body))
	if err != nil {
		return err
	}
	meta := model.Metadata()
	req, err := oip.DecodeRequest(body, headerLen, meta, s.config.MaxRows)
	if err != nil {
		return err
	}
	outputs, err := inf.Run(r.Context(), model, req.Batch)
	if err != nil {
		return err
	}
	setV2Variant(req, inf)
	header, tensors, err := oip.AppendResponse(make([]byte, 0, 256+16*req.Batch.Rows), req, meta, outputs)
	if err != nil {
		return err
	}
	h := w.Header()
	if tensors != nil {
		h.Set("Content-Type", "application/octet-stream")
		h.Set(oip.HeaderLength, strconv.Itoa(len(header)))
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(header)+len(tensors)))
	w.WriteHeader(http.StatusOK)
	w.Write(header)
	w.Write(tensors)
	return nil
}

// buildVersion is the server's version for the server metadata: the module
// version, or the VCS revision it was built from.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	version := "devel"
	for _, setting := range info.Settings {
		if setting.Key == "vcs.revision" && len(setting.Value) >= 12 {
			version += "+" + setting.Value[:12]
		}
		if setting.Key == "vcs.modified" && setting.Value == "true" {
			version += "-dirty"
		}
	}
	return version
}
