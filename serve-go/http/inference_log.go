package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	"skl2go/tfserving"
)

// The inference log's hooks (docs/inference-log.md): the request id every
// inference carries, the sampled record of each answered inference, and
// the ground truth endpoint. Writing is the skl2go.InferenceLogger's
// business (package inferencelog): here only what the request gives.

// requestIDHeader names a request: the client's (or nginx's) id, else one
// made here; echoed in the answer and written in the inference log.
const requestIDHeader = "X-Request-Id"

// maxRequestID is the longest request id accepted.
const maxRequestID = 128

// validRequestID reports whether id is 1 to maxRequestID printable ASCII
// characters.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID returns a random id, 32 hex digits, as nginx's $request_id.
func newRequestID() string {
	var b [16]byte
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

// inferenceRequestID returns the request's id, checked, or a new one, and
// echoes it in the answer's headers.
func inferenceRequestID(w http.ResponseWriter, r *http.Request) (string, error) {
	id := r.Header.Get(requestIDHeader)
	if id == "" {
		id = newRequestID()
	} else if !validRequestID(id) {
		return "", skl2go.Errorf(skl2go.EINVALID, "header %s must be 1 to %d printable ASCII characters, got %d bytes",
			requestIDHeader, maxRequestID, len(id))
	}
	w.Header().Set(requestIDHeader, id)
	return id, nil
}

// logInference hands an answered inference to the inference log, sampled
// at InferenceLogRate. The batch and outputs are the request's own (decoded
// and produced for it alone), so the record refers to them without a copy.
func (s *Server) logInference(ctx context.Context, inf *inference) {
	rate := s.config.InferenceLogRate
	if s.config.InferenceLog == nil || rate <= 0 || inf.batch == nil || (rate < 1 && rand.Float64() >= rate) {
		return
	}
	s.config.InferenceLog.Log(ctx, &skl2go.InferenceRecord{
		Type: skl2go.InferenceEventType, Time: inf.start, RequestID: inf.requestID,
		Model: inf.meta.Name, Version: inf.meta.Version, Task: inf.meta.Task, Latency: time.Since(inf.start),
		Inputs: inf.batch.Columns, Outputs: inf.outputs,
	})
}

// --- ground truth -------------------------------------------------------------

// MaxActuals is the most ground truth records one request may carry.
const MaxActuals = 10_000

// handleActuals serves POST /v1/models/{name}[/versions/{v}]/actuals: the
// true outcome of rows predicted earlier, written to the inference log
// (each row always, never sampled) to be joined with the predictions.
func (s *Server) handleActuals(w http.ResponseWriter, r *http.Request, name string, version int) {
	if err := s.actuals(w, r, name, version); err != nil {
		if skl2go.ErrorCode(err) == skl2go.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", `Bearer realm="skl2go actuals"`)
		}
		s.writeError(w, r, err)
	}
}

func (s *Server) actuals(w http.ResponseWriter, r *http.Request, name string, version int) error {
	if s.config.ActualsToken == "" || s.config.InferenceLog == nil {
		return skl2go.Errorf(skl2go.EFORBIDDEN,
			"this server takes no ground truth: start it with --inference-log and --actuals-token-file")
	}
	if !s.actualsLimiter.allow(time.Now()) {
		return skl2go.Errorf(eTOOMANY, "too many ground truth requests: at most %g per second; retry shortly", s.actualsLimiter.rate)
	}
	if err := s.checkActualsToken(r.Header.Get("Authorization")); err != nil {
		return err
	}
	requestID, err := inferenceRequestID(w, r)
	if err != nil {
		return err
	}
	if err := tfserving.CheckContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	buf := s.bodies.Get().(*bytes.Buffer)
	defer s.releaseBody(buf)
	body, err := readBodyInto(buf, w, r, s.config.MaxBodyBytes)
	if err != nil {
		return err
	}
	actuals, err := decodeActuals(body)
	if err != nil {
		return err
	}
	rec := &skl2go.InferenceRecord{Type: skl2go.ActualEventType, Time: time.Now(), RequestID: requestID,
		Model: name, Version: version, Actuals: actuals}
	if !s.config.InferenceLog.Log(r.Context(), rec) {
		return skl2go.Errorf(skl2go.EUNAVAILABLE, "the inference log is behind: the ground truth was not recorded; retry shortly")
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": len(actuals)})
	return nil
}

// checkActualsToken checks "Bearer <token>" against the configured token,
// in constant time (of the hashes: the length leaks nothing either). The
// token is never in a message.
func (s *Server) checkActualsToken(authorization string) error {
	scheme, token, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	if authorization == "" || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return skl2go.Errorf(skl2go.EUNAUTHORIZED, `ground truth needs the actuals token: send "Authorization: Bearer <token>"`)
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	want := sha256.Sum256([]byte(s.config.ActualsToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return skl2go.Errorf(skl2go.EUNAUTHORIZED, "wrong actuals token")
	}
	return nil
}

// decodeActuals reads {"actuals": [{"request_id" or "key", "row", "actual"}, …]},
// naming the record and field of any problem.
func decodeActuals(body []byte) ([]skl2go.Actual, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return nil, skl2go.Errorf(skl2go.EINVALID, `body must be a JSON object {"actuals": [...]}`)
	}
	for k := range doc {
		if k != "actuals" {
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: unknown field (the body has only \"actuals\")", skl2go.Quote(k))
		}
	}
	raw, ok := doc["actuals"]
	if !ok {
		return nil, skl2go.Errorf(skl2go.EINVALID, `actuals: missing: the body is {"actuals": [{"request_id": …, "row": 0, "actual": 12.5}, …]}`)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, skl2go.Errorf(skl2go.EINVALID, "actuals: must be a list of records")
	}
	switch {
	case len(items) == 0:
		return nil, skl2go.Errorf(skl2go.EINVALID, "actuals: must contain at least one record")
	case len(items) > MaxActuals:
		return nil, skl2go.Errorf(skl2go.ETOOLARGE, "actuals: at most %d records per request, got %d", MaxActuals, len(items))
	}
	out := make([]skl2go.Actual, len(items))
	for i, item := range items {
		if err := decodeActual(item, &out[i], fmt.Sprintf("actuals[%d]", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeActual(raw json.RawMessage, a *skl2go.Actual, where string) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return skl2go.Errorf(skl2go.EINVALID, "%s: must be an object {\"request_id\" or \"key\", \"row\", \"actual\"}", where)
	}
	for k := range obj {
		switch k {
		case "request_id", "key", "row", "actual":
		default:
			return skl2go.Errorf(skl2go.EINVALID, "%s.%s: unknown field (use request_id or key, row, actual)", where, k)
		}
	}
	str := func(field string, dst *string) error {
		v, ok := obj[field]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return skl2go.Errorf(skl2go.EINVALID, "%s.%s: must be a string", where, field)
		}
		if !validRequestID(*dst) {
			return skl2go.Errorf(skl2go.EINVALID, "%s.%s: must be 1 to %d printable ASCII characters", where, field, maxRequestID)
		}
		return nil
	}
	if err := str("request_id", &a.RequestID); err != nil {
		return err
	}
	if err := str("key", &a.Key); err != nil {
		return err
	}
	if a.RequestID == "" && a.Key == "" {
		return skl2go.Errorf(skl2go.EINVALID, "%s.request_id: missing: each record names its prediction by request_id (and row) or by key", where)
	}
	if v, ok := obj["row"]; ok {
		var row float64
		if err := json.Unmarshal(v, &row); err != nil || row < 0 || row != math.Trunc(row) || row > math.MaxInt32 {
			return skl2go.Errorf(skl2go.EINVALID, "%s.row: must be an integer of at least 0, got %s", where, shortJSON(v))
		}
		a.Row = int(row)
	}
	v, ok := obj["actual"]
	if !ok || string(v) == "null" {
		return skl2go.Errorf(skl2go.EINVALID, "%s.actual: missing: the true value (a number)", where)
	}
	if err := json.Unmarshal(v, &a.Value); err != nil || math.IsInf(a.Value, 0) || math.IsNaN(a.Value) {
		return skl2go.Errorf(skl2go.EINVALID, "%s.actual: must be a finite number, got %s", where, shortJSON(v))
	}
	return nil
}

// shortJSON shows a client's JSON value in a message, shortened.
func shortJSON(raw json.RawMessage) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// eTOOMANY is an HTTP-only code: a request over a rate limit (429).
const eTOOMANY = "too_many_requests"

// tokenBucket limits requests to rate per second, burst at once.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// --- metrics ------------------------------------------------------------------

// inferenceLogCounts is what an inference log that counts tells the
// metrics (inferencelog.Sink implements it).
type inferenceLogCounts interface {
	Written() uint64
	Dropped() map[string]uint64
	Errors() uint64
}

// inferenceLogCollector reports the inference log's counts at each scrape.
type inferenceLogCollector struct {
	log                     inferenceLogCounts
	written, dropped, error *prometheus.Desc
}

func newInferenceLogCollector(log inferenceLogCounts) *inferenceLogCollector {
	return &inferenceLogCollector{log: log,
		written: prometheus.NewDesc("skl2go_inference_log_written_total",
			"Inference log records written to its files (one per inference or per ground truth row), as of the last flush.", nil, nil),
		dropped: prometheus.NewDesc("skl2go_inference_log_dropped_total",
			"Inference log records dropped, by reason (queue_full: the writer was behind; write_error: the disk refused them; closed: after shutdown). Requests never wait for the log.",
			[]string{"reason"}, nil),
		error: prometheus.NewDesc("skl2go_inference_log_errors_total",
			"Disk errors of the inference log (open, write, flush, close, delete); each is logged, at most every 10 s.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *inferenceLogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.written
	ch <- c.dropped
	ch <- c.error
}

// Collect implements prometheus.Collector.
func (c *inferenceLogCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(c.log.Written()))
	for reason, n := range c.log.Dropped() {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(c.error, prometheus.CounterValue, float64(c.log.Errors()))
}
