package http

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"skl2go"
)

// The Open Inference Protocol (KServe V2) REST API, as Triton and KServe
// speak it, beside the v1 predict API: server and model metadata, health,
// and inference with JSON or binary tensor data (Triton's binary tensor
// data extension, which tritonclient uses by default).

// v2Extensions are the protocol extensions the server metadata announces.
var v2Extensions = []string{"binary_tensor_data"}

// v2Platform is the protocol's name for ONNX models run by ONNX Runtime.
const v2Platform = "onnx_onnxv1"

// v2Types maps model tensor types to the protocol's datatypes.
var v2Types = map[skl2go.DataType]string{
	skl2go.Bool:    "BOOL",
	skl2go.Int32:   "INT32",
	skl2go.Int64:   "INT64",
	skl2go.Float32: "FP32",
	skl2go.Float64: "FP64",
	skl2go.String:  "BYTES",
}

// v2KnownTypes lists every datatype of the protocol, so that a datatype no
// model input has is told apart from a misspelt one.
var v2KnownTypes = map[string]bool{
	"BOOL": true, "UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true,
	"FP16": true, "BF16": true, "FP32": true, "FP64": true, "BYTES": true,
}

// handleV2 dispatches /v2 and /v2/…
func (s *Server) handleV2(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v2", "/v2/":
		s.route("v2_server_metadata", http.MethodGet, s.handleV2ServerMetadata).ServeHTTP(w, r)
		return
	case "/v2/health/live":
		s.route("v2_health_live", http.MethodGet, s.handleV2Live).ServeHTTP(w, r)
		return
	case "/v2/health/ready":
		s.route("v2_health_ready", http.MethodGet, s.handleV2Ready).ServeHTTP(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/models/")
	if !ok {
		s.route("not_found", "", s.handleNotFound).ServeHTTP(w, r)
		return
	}
	route, method, handle := "v2_model_metadata", http.MethodGet, s.handleV2ModelMetadata
	if p, ok := strings.CutSuffix(rest, "/infer"); ok {
		route, method, handle, rest = "v2_infer", http.MethodPost, s.handleV2Infer, p
	} else if p, ok := strings.CutSuffix(rest, "/ready"); ok {
		route, method, handle, rest = "v2_model_ready", http.MethodGet, s.handleV2ModelReady, p
	}
	name, version, err := parseModelPath("/v2/models/", rest)
	s.route(route, method, func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		handle(w, r, name, version)
	}).ServeHTTP(w, r)
}

func (s *Server) handleV2ServerMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": "skl2go", "version": s.version, "extensions": v2Extensions})
}

// handleV2Live answers 200 with an empty body, as the protocol's health
// endpoints do.
func (s *Server) handleV2Live(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

// handleV2Ready answers 200 when ready; "not ready" is a 4xx in the
// protocol (400, as Triton answers), where /readyz answers 503 for load
// balancers.
func (s *Server) handleV2Ready(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "server not ready"})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleV2ModelReady answers 200 when the model (version) is loaded and the
// server is ready, 404 for a model or version that is not loaded.
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
	w.WriteHeader(http.StatusOK)
}

// v2Tensor is a tensor's description in model metadata.
type v2Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) handleV2ModelMetadata(w http.ResponseWriter, r *http.Request, name string, version int) {
	model, release, err := s.store.Acquire(name, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	meta := model.Metadata()
	versions := []string{}
	for _, m := range s.store.Models() {
		if m.Name == meta.Name {
			for _, v := range m.Versions {
				versions = append(versions, strconv.Itoa(v))
			}
		}
	}
	tensors := func(specs []skl2go.TensorSpec) []v2Tensor {
		out := make([]v2Tensor, len(specs))
		for i, t := range specs {
			out[i] = v2Tensor{Name: t.Name, Datatype: v2Types[t.Type], Shape: t.Shape}
		}
		return out
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":     meta.Name,
		"versions": versions,
		"platform": v2Platform,
		"inputs":   tensors(meta.Inputs),
		"outputs":  tensors(meta.Outputs),
	})
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
