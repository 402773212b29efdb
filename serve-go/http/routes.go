package http

import (
	"net/http"
	"strconv"
	"strings"

	"skl2go"
)

// endpoint is one route of the API: the method and path it answers (a
// ServeMux path pattern, or a model path whose {name} and {version} the
// model matcher reads), the name its metrics and logs carry, and its
// handler (modelHandler for model paths).
type endpoint struct {
	Method, Path, Name string
	Doc                string // what it answers, for docs/server.md

	handler      http.HandlerFunc
	modelHandler func(w http.ResponseWriter, r *http.Request, name string, version int)
}

// Model paths: {name} is a model, [/versions/{version}] optionally pins a
// version (else the latest answers). ServeMux wildcards are whole path
// segments, so v1's ":predict" suffix is read by modelRoutes, which also
// keeps the answers for a malformed name or version the same on every
// model endpoint.
const (
	v1Model = "/v1/models/{name}[/versions/{version}]"
	v2Model = "/v2/models/{name}[/versions/{version}]"
)

// endpoints is every route of the API: the one place they are defined.
// docs/server.md lists them (a test checks it does).
func (s *Server) endpoints() []endpoint {
	get, post := http.MethodGet, http.MethodPost
	return []endpoint{
		{Method: get, Path: "/healthz", Name: "healthz", Doc: "200 `{\"status\":\"ok\"}` while the process runs (liveness)",
			handler: s.handleHealth},
		{Method: get, Path: "/readyz", Name: "readyz", Doc: "200 `{\"status\":\"ready\"}` once the models are loaded; 503 while shutting down",
			handler: s.handleReady},
		{Method: get, Path: "/metrics", Name: "metrics", Doc: "Prometheus text (on each replica; nginx does not proxy it)",
			handler: s.handleMetrics},
		{Method: get, Path: "/auth", Name: "auth", Doc: "nginx's API key check (`auth_request`): 204 with `X-Client-Id`, 401 or 403; 404 when keys are off (nginx does not proxy it)",
			handler: s.handleAuth},
		{Method: get, Path: "/openapi.yaml", Name: "openapi", Doc: "the OpenAPI 3 document of this API",
			handler: handleOpenAPI},
		{Method: get, Path: "/v1/models", Name: "list", Doc: "the models served, their loaded versions and the latest",
			handler: s.handleList},
		{Method: get, Path: v1Model, Name: "metadata", Doc: "how to call the version (the latest without /versions): name, version, task, classes, inputs, outputs; the rest of model.json stays on disk",
			modelHandler: s.handleMetadata},
		{Method: post, Path: v1Model + ":predict", Name: "predict", Doc: "v1 (TF Serving) predict: rows `{\"instances\": [...]}` answered `{\"predictions\": [...]}`, or columns `{\"inputs\": {...}}` answered `{\"outputs\": ...}`",
			modelHandler: s.handlePredict},
		{Method: post, Path: v1Model + "/actuals", Name: "actuals", Doc: "ground truth for earlier predictions, `{\"actuals\": [{\"request_id\" or \"key\", \"row\", \"actual\"}]}` answered `{\"accepted\": n}`, written to the inference log; bearer token of `--actuals-token-file` (401; 403 when none is configured), rate-limited (429)",
			modelHandler: s.handleActuals},
		{Method: get, Path: "/v2", Name: "v2_server_metadata", Doc: "server metadata: name, version, extensions",
			handler: s.handleV2ServerMetadata},
		{Method: get, Path: "/v2/{$}", Name: "v2_server_metadata", Doc: "server metadata: name, version, extensions",
			handler: s.handleV2ServerMetadata},
		{Method: get, Path: "/v2/health/live", Name: "v2_health_live", Doc: "200 `{\"live\":true}` while the process runs",
			handler: s.handleV2Live},
		{Method: get, Path: "/v2/health/ready", Name: "v2_health_ready", Doc: "200 `{\"ready\":true}` once the models are loaded; 400 while shutting down",
			handler: s.handleV2Ready},
		{Method: get, Path: v2Model, Name: "v2_model_metadata", Doc: "model metadata: inputs, outputs (datatypes, shapes), platform, versions",
			modelHandler: s.handleV2ModelMetadata},
		{Method: get, Path: v2Model + "/ready", Name: "v2_model_ready", Doc: "200 `{\"name\":…,\"ready\":true}` when the model (version) is loaded and the server ready; 404 if not loaded",
			modelHandler: s.handleV2ModelReady},
		{Method: post, Path: v2Model + "/infer", Name: "v2_infer", Doc: "Open Inference Protocol inference, JSON or binary tensor data",
			modelHandler: s.handleV2Infer},
	}
}

// routes returns the handler of every endpoint. A path answered with
// another method gets 405 naming the right one (GET also answers HEAD);
// any other path gets 404.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	paths := map[string]bool{}
	models := map[string][]endpoint{} // by model path prefix
	for _, e := range s.endpoints() {
		if prefix, _, ok := strings.Cut(e.Path, "{name}"); ok {
			models[prefix] = append(models[prefix], e)
			continue
		}
		mux.Handle(e.Method+" "+e.Path, s.route(e.Name, "", e.handler))
		mux.Handle(e.Path, s.route(e.Name, "", s.methodNotAllowed(e.Method)))
		paths[e.Path] = true
	}
	for prefix, eps := range models {
		mux.Handle(prefix, s.modelRoutes(prefix, eps))
		// ServeMux would redirect the prefix without its slash to it.
		if root := strings.TrimSuffix(prefix, "/"); !paths[root] {
			mux.Handle(root, s.route("not_found", "", s.handleNotFound))
		}
	}
	mux.Handle("/", s.route("not_found", "", s.handleNotFound))
	return mux
}

// modelRoutes serves the model endpoints under prefix: the first whose
// suffix the path ends with (the one without a suffix last) answers, with
// the model name and version the path gives.
func (s *Server) modelRoutes(prefix string, eps []endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, rest := matchModelPath(eps, strings.TrimPrefix(r.URL.Path, prefix))
		name, version, err := parseModelPath(prefix, rest)
		s.serveRoute(w, r, e.Name, e.Method, func(w http.ResponseWriter, r *http.Request) {
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			e.modelHandler(w, r, name, version)
		})
	})
}

// matchModelPath picks the endpoint for rest, a path after the model
// prefix, and returns rest without the endpoint's suffix.
func matchModelPath(eps []endpoint, rest string) (endpoint, string) {
	var plain endpoint
	for _, e := range eps {
		_, suffix, _ := strings.Cut(e.Path, "]")
		if suffix == "" {
			plain = e
		} else if p, ok := strings.CutSuffix(rest, suffix); ok {
			return e, p
		}
	}
	return plain, rest
}

// parseModelPath splits "{name}" or "{name}/versions/{v}", found after
// prefix in the URL; version 0 means the latest.
func parseModelPath(prefix, p string) (name string, version int, err error) {
	parts := strings.Split(p, "/")
	switch {
	case len(parts) == 1:
	case len(parts) == 3 && parts[1] == "versions":
		v, convErr := strconv.Atoi(parts[2])
		if convErr != nil || v < 1 || strconv.Itoa(v) != parts[2] {
			return "", 0, skl2go.Errorf(skl2go.EINVALID, "version must be a positive integer, got %q", parts[2])
		}
		version = v
	default:
		return "", 0, skl2go.Errorf(skl2go.ENOTFOUND, "no such endpoint: %s%s", prefix, p)
	}
	if !skl2go.ValidName(parts[0]) {
		return "", 0, skl2go.Errorf(skl2go.EINVALID,
			"invalid model name %q: use letters, digits, '_', '.', '-' (at most 128, no '..')", parts[0])
	}
	return parts[0], version, nil
}
