// Package http serves skl2go models over HTTP: the TensorFlow Serving style
// predict API (v1), the Open Inference Protocol (KServe V2, as Triton speaks
// it), model metadata, health and readiness, and Prometheus metrics.
package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
)

// Config holds the server's limits. Zero timeouts take the defaults below.
type Config struct {
	MaxBodyBytes int64 // larger bodies get 413
	MaxRows      int   // more instances get 413

	ReadHeaderTimeout time.Duration // to read a request's headers (5 s)
	ReadTimeout       time.Duration // to read a whole request, body included (30 s)
	WriteTimeout      time.Duration // from the end of the headers to the end of the answer (60 s)
	IdleTimeout       time.Duration // a keep-alive connection may stay idle (120 s; nginx closes its own after 30 s)

	// Limiter, if set, is the bound on predictions the models were wrapped
	// with; the server reports its load as metrics.
	Limiter *skl2go.Limiter
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Server is the HTTP front of a model store.
type Server struct {
	store   skl2go.ModelStore
	config  Config
	logger  *slog.Logger
	metrics *metrics
	ready   atomic.Bool
	server  *http.Server
	version string    // reported by the V2 server metadata
	bodies  sync.Pool // *bytes.Buffer for request bodies, reused across requests
}

// maxPooledBody is the largest body buffer kept for reuse: a rare huge
// request should not pin its memory.
const maxPooledBody = 4 << 20

func (s *Server) releaseBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		s.bodies.Put(buf)
	}
}

// NewServer returns a server for store, registering its metrics in reg.
// It is not ready until SetReady(true).
func NewServer(store skl2go.ModelStore, config Config, logger *slog.Logger, reg *prometheus.Registry) *Server {
	s := &Server{store: store, config: config, logger: logger, metrics: newMetrics(reg, store, config.Limiter), version: buildVersion()}
	s.bodies.New = func() any { return new(bytes.Buffer) }
	mux := http.NewServeMux()
	mux.Handle("/healthz", s.route("healthz", http.MethodGet, s.handleHealth))
	mux.Handle("/readyz", s.route("readyz", http.MethodGet, s.handleReady))
	mux.Handle("/metrics", s.route("metrics", http.MethodGet, s.metrics.handler(reg).ServeHTTP))
	mux.Handle("/openapi.yaml", s.route("openapi", http.MethodGet, handleOpenAPI))
	mux.Handle("/v1/models", s.route("list", http.MethodGet, s.handleList))
	mux.Handle("/v1/models/", http.HandlerFunc(s.handleModels))
	mux.Handle("/v2", http.HandlerFunc(s.handleV2))
	mux.Handle("/v2/", http.HandlerFunc(s.handleV2))
	mux.Handle("/", s.route("not_found", "", s.handleNotFound))
	s.server = &http.Server{
		Handler:           s.canonicalPaths(mux),
		ReadHeaderTimeout: orDefault(config.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       orDefault(config.ReadTimeout, 30*time.Second),
		WriteTimeout:      orDefault(config.WriteTimeout, 60*time.Second),
		IdleTimeout:       orDefault(config.IdleTimeout, 120*time.Second),
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s
}

// canonicalPaths answers 404 for paths with "//", "." or ".." segments,
// where http.ServeMux would redirect: an API has one spelling per resource.
func (s *Server) canonicalPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		if clean != p {
			s.route("not_found", "", s.handleNotFound).ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the server's routes, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.server.Handler }

// SetReady sets what /readyz answers.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.server.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops being ready, then waits for in-flight requests to finish
// (or ctx to end) before returning.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	return s.server.Shutdown(ctx)
}

// route wraps a handler with the method check, metrics and a debug log line.
func (s *Server) route(name, method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		if method != "" && r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			rec.Header().Set("Allow", method)
			s.writeError(rec, r, errMethod(r.Method, method))
		} else {
			h(rec, r)
		}
		s.metrics.httpRequests.WithLabelValues(name, strconv.Itoa(rec.status)).Inc()
		if s.logger.Enabled(r.Context(), slog.LevelDebug) { // no argument boxing per request otherwise
			s.logger.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000, "request_id", requestID(r))
		}
	})
}

// requestID is the X-Request-ID nginx gives each request (it logs it too,
// and returns it to the client), so that a client's report leads to the
// replica's log lines. Bounded: a direct caller can send anything.
func requestID(r *http.Request) string {
	id := r.Header.Get("X-Request-ID")
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}

// handleModels dispatches /v1/models/{name}[/versions/{v}][:predict].
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	predict := strings.HasSuffix(rest, ":predict")
	rest = strings.TrimSuffix(rest, ":predict")
	name, version, err := parseModelPath("/v1/models/", rest)
	if predict {
		s.route("predict", http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			s.handlePredict(w, r, name, version)
		}).ServeHTTP(w, r)
		return
	}
	s.route("metadata", http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.handleMetadata(w, r, name, version)
	}).ServeHTTP(w, r)
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

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, skl2go.Errorf(skl2go.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		s.writeError(w, r, skl2go.Errorf(skl2go.EUNAVAILABLE, "not ready"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"models": s.store.Models()})
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request, name string, version int) {
	m, release, err := s.store.Acquire(name, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(m.Metadata().Raw)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// statusRecorder remembers the status a handler wrote, for metrics and logs.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}
