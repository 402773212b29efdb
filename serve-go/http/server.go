// Package http serves skl2go models over HTTP: the TensorFlow Serving style
// predict API (v1), the Open Inference Protocol (KServe V2, as Triton speaks
// it), model metadata, health and readiness, and Prometheus metrics.
//
// It owns the transport only: the routes (routes.go, the one table of
// them), reading bodies, status codes, limits, logs and metrics. Each wire
// protocol's documents and encodings are its package's: tfserving (v1) and
// oip (V2).
package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"skl2go"
	"skl2go/tfserving"
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

	// Keys, if set, is the API key file nginx's auth_request asks GET /auth
	// about (nil: keys off, /auth answers 404).
	Keys Authorizer

	// InferenceLog, if set, records InferenceLogRate (0 to 1) of the
	// inferences answered, and the ground truth POSTed to /actuals with
	// ActualsToken as bearer token ("": the endpoint answers 403), at most
	// ActualsRate requests per second (default 10, bursts of twice that).
	InferenceLog     skl2go.InferenceLogger
	InferenceLogRate float64
	ActualsToken     string
	ActualsRate      float64
	// ShadowQueue is how many experiment mirror runs may wait (shadowQueue if 0);
	// beyond, they are dropped and counted.
	ShadowQueue int

	// Deadline, if set, refuses at once (503, Retry-After) a prediction
	// nginx received longer ago than this, by its X-Request-Start header:
	// beyond capacity requests wait in sockets and run queues, before the
	// batcher's estimate can see them, and their clients have waited past
	// the deadline already. Late, if set, is told of each one.
	Deadline time.Duration
	Late     func(*skl2go.Metadata)
}

// Authorizer decides whether an API key covers a request (apikey.File).
type Authorizer interface {
	// Authorize returns the key's client id, or an skl2go.EUNAUTHORIZED or
	// EFORBIDDEN error whose message never contains the key.
	Authorize(authorization, method, uri string) (client string, err error)
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
	// metricsHandler serves the registry the metrics are registered in.
	metricsHandler http.Handler
	ready          atomic.Bool
	server         *http.Server
	version        string    // reported by the V2 server metadata
	bodies         sync.Pool // *bytes.Buffer for request bodies, reused across requests
	actualsLimiter *tokenBucket
	shadow         *shadow // runs experiment mirrors (experiment.go)
}

// NewServer returns a server for store, registering its metrics in reg.
// It is not ready until SetReady(true).
func NewServer(store skl2go.ModelStore, config Config, logger *slog.Logger, reg *prometheus.Registry) *Server {
	s := &Server{store: store, config: config, logger: logger, version: buildVersion(),
		metrics: newMetrics(reg, store, config.Limiter), metricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})}
	s.bodies.New = func() any { return new(bytes.Buffer) }
	if config.ActualsRate <= 0 {
		config.ActualsRate = 10
	}
	s.actualsLimiter = newTokenBucket(config.ActualsRate, int(math.Ceil(2*config.ActualsRate)))
	if counts, ok := config.InferenceLog.(inferenceLogCounts); ok {
		reg.MustRegister(newInferenceLogCollector(counts))
	}
	s.shadow = newShadow(store, s.metrics.experiment, logger, config.InferenceLog, config.ShadowQueue)
	s.server = &http.Server{
		Handler:           s.canonicalPaths(s.routes()),
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

// Version is the server's version, as the V2 server metadata reports it.
func (s *Server) Version() string { return s.version }

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
	err := s.server.Shutdown(ctx)
	s.shadow.close()
	return err
}

// route wraps a handler with serveRoute.
func (s *Server) route(name, method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveRoute(w, r, name, method, h) })
}

// serveRoute serves r with h, recording the answer's status in the metrics
// under the route's name and in a debug log line. When method is set, it
// answers 405 to any other (GET also answers HEAD) instead.
func (s *Server) serveRoute(w http.ResponseWriter, r *http.Request, name, method string, h func(http.ResponseWriter, *http.Request)) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	if method != "" && r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		s.methodNotAllowed(method)(rec, r)
	} else {
		h(rec, r)
	}
	s.metrics.observeRoute(name, rec.status)
	client := s.clientID(r)
	if client != "" {
		s.metrics.clientRequests.WithLabelValues(client, name, strconv.Itoa(rec.status)).Inc()
	}
	if s.logger.Enabled(r.Context(), slog.LevelDebug) { // no argument boxing per request otherwise
		s.logger.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000, "request_id", requestID(r), "client", client)
	}
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

// clientID is the X-Client-Id nginx sets from its API key check (the
// client's own header of that name is replaced there). Only with API keys
// on: without a key file a direct caller's header is not trusted.
func (s *Server) clientID(r *http.Request) string {
	if s.config.Keys == nil {
		return ""
	}
	id := r.Header.Get("X-Client-Id")
	if id == "-" { // nginx's "no client"
		return ""
	}
	if len(id) > 64 {
		id = id[:64]
	}
	return id
}

// handleAuth is nginx's auth_request: 204 with X-Client-Id when the
// client's key (its Authorization header) covers the method and path nginx
// passes in X-Original-Method and X-Original-URI, else 401 or 403 with the
// reason. nginx proxies the API only after a 2xx here, so the edge and the
// replicas apply the one key file.
func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request) {
	if s.config.Keys == nil {
		s.writeError(w, r, skl2go.Errorf(skl2go.ENOTFOUND, "API keys are off on this server"))
		return
	}
	client, err := s.config.Keys.Authorize(r.Header.Get("Authorization"),
		r.Header.Get("X-Original-Method"), r.Header.Get("X-Original-URI"))
	if client != "" {
		w.Header().Set("X-Client-Id", client)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, skl2go.Errorf(skl2go.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
}

// methodNotAllowed answers 405 for a path that answers only method.
func (s *Server) methodNotAllowed(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", method)
		s.writeError(w, r, errMethod(r.Method, method))
	}
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

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.metricsHandler.ServeHTTP(w, r)
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
	writeJSON(w, http.StatusOK, tfserving.NewModelMetadata(m.Metadata()))
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
