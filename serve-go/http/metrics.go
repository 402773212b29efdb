package http

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"skl2go"
	"skl2go/batching"
)

// metrics are the server's Prometheus series, named after Triton's
// nv_inference_* family under the skl2go_ prefix, with Prometheus units
// (_total counters, _seconds histograms). Label values are bounded: model
// and version come from the store, never from an unknown URL; protocol is
// v1, v2 or grpc; reason is an error code.
//
// An inference is one row; an execution is one run of the model. Without
// dynamic batching a request is one execution of its rows; a batcher that
// merges requests runs the model less often than requests arrive.
type metrics struct {
	requestSuccess  *prometheus.CounterVec
	requestFailure  *prometheus.CounterVec
	inferenceCount  *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	inputDuration   *prometheus.HistogramVec
	inferDuration   *prometheus.HistogramVec
	outputDuration  *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
	clientRequests  *prometheus.CounterVec
	experiment      *experimentMetrics // per variant (experiment.go)

	// success holds each model version and protocol's series, looked up
	// once: a *Vec's lookup hashes every label value, six of them per
	// answered request otherwise.
	success sync.Map // successKey -> *successSeries
	routes  sync.Map // routeKey -> prometheus.Counter
}

type routeKey struct {
	route string
	code  int
}

// observeRoute counts one answer of the named route.
func (m *metrics) observeRoute(route string, code int) {
	cached(&m.routes, routeKey{route, code}, func() prometheus.Counter {
		return m.httpRequests.WithLabelValues(route, strconv.Itoa(code))
	}).Inc()
}

// cached returns the value cache holds for key, made by build the first time:
// a series looked up once rather than by its label values on every request.
func cached[K comparable, V any](cache *sync.Map, key K, build func() V) V {
	if v, ok := cache.Load(key); ok {
		return v.(V)
	}
	v, _ := cache.LoadOrStore(key, build())
	return v.(V)
}

type successKey struct {
	model    string
	version  int
	protocol string
}

// successSeries are the series observeSuccess updates for one model
// version and protocol.
type successSeries struct {
	requests, rows                prometheus.Counter
	request, input, infer, output prometheus.Observer
}

// durationBuckets span 50µs to about 3s.
var durationBuckets = prometheus.ExponentialBuckets(50e-6, 2.5, 13)

func newMetrics(reg prometheus.Registerer, store skl2go.ModelStore, limiter *skl2go.Limiter) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, labels)
	}
	m := &metrics{
		requestSuccess: counter("skl2go_inference_request_success_total",
			"Inference requests (v1 predict, v2 infer, gRPC ModelInfer) answered 200 (gRPC: OK), by model, version and protocol.",
			"model", "version", "protocol"),
		requestFailure: counter("skl2go_inference_request_failure_total",
			"Inference requests for a loaded model that failed, by model, version, protocol and reason "+
				"(invalid, too_large, timeout, unsupported_media_type, unavailable, overloaded, internal).",
			"model", "version", "protocol", "reason"),
		inferenceCount: counter("skl2go_inference_count_total",
			"Inferences (rows) answered, by model, version and protocol.",
			"model", "version", "protocol"),
		requestDuration: histogram("skl2go_inference_request_duration_seconds",
			"Time to answer a successful inference request, from routing to the last byte written, by model, version and protocol.",
			"model", "version", "protocol"),
		inputDuration: histogram("skl2go_inference_compute_input_duration_seconds",
			"Time to read and decode a successful request's body into a batch, by model and version.",
			"model", "version"),
		inferDuration: histogram("skl2go_inference_compute_infer_duration_seconds",
			"Time the model took to predict a successful request's batch, by model and version.",
			"model", "version"),
		outputDuration: histogram("skl2go_inference_compute_output_duration_seconds",
			"Time to encode and write a successful request's answer, by model and version.",
			"model", "version"),
		httpRequests: counter("skl2go_http_requests_total",
			"HTTP requests by route and status code.",
			"route", "code"),
		clientRequests: counter("skl2go_client_requests_total",
			"API requests by the client id nginx authenticated (API keys on), route and status code.",
			"client", "route", "code"),
	}
	executions := executionCollector{store: store, desc: prometheus.NewDesc("skl2go_inference_exec_count_total",
		"Model executions (runs of ONNX Runtime, each on one batch of rows), by model and version.",
		[]string{"model", "version"}, nil)}
	reg.MustRegister(m.requestSuccess, m.requestFailure, m.inferenceCount, executions,
		m.requestDuration, m.inputDuration, m.inferDuration, m.outputDuration, m.httpRequests, m.clientRequests, newStoreCollector(store),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if limiter != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "skl2go_predictions_running",
				Help: "Predictions running now (at most --max-inflight).",
			}, func() float64 { running, _ := limiter.Load(); return float64(running) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "skl2go_predictions_waiting",
				Help: "Predictions waiting for a slot now (at most --max-queue; beyond, 503).",
			}, func() float64 { _, waiting := limiter.Load(); return float64(waiting) }),
		)
	}
	m.experiment = newExperimentMetrics(reg)
	return m
}

// storeCollector reports, at each scrape, which versions the store serves
// and how many versions it refused: the signs of a model roll-out.
type storeCollector struct {
	store                              skl2go.ModelStore
	latest, loaded, refusals, loadTime *prometheus.Desc
}

func newStoreCollector(store skl2go.ModelStore) *storeCollector {
	return &storeCollector{
		store: store,
		latest: prometheus.NewDesc("skl2go_model_latest_version",
			"The version that answers requests without a pinned version, by model.", []string{"model"}, nil),
		loaded: prometheus.NewDesc("skl2go_model_versions_loaded",
			"Versions of the model loaded and addressable, by model.", []string{"model"}, nil),
		refusals: prometheus.NewDesc("skl2go_model_load_failures_total",
			"Versions that failed to load or to validate and were refused (the versions serving kept serving), by model.",
			[]string{"model"}, nil),
		loadTime: prometheus.NewDesc("skl2go_model_load_seconds",
			"Seconds the latest version took to read, load and check before it was swapped in (requests kept "+
				"going to the version before it meanwhile), by model.", []string{"model"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.latest
	ch <- c.loaded
	ch <- c.refusals
	ch <- c.loadTime
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	failures := c.store.LoadFailures()
	names := make([]string, 0, len(failures))
	for name := range failures {
		names = append(names, name)
	}
	for _, m := range c.store.Models() {
		ch <- prometheus.MustNewConstMetric(c.latest, prometheus.GaugeValue, float64(m.Latest), m.Name)
		ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, float64(len(m.Versions)), m.Name)
		ch <- prometheus.MustNewConstMetric(c.loadTime, prometheus.GaugeValue, m.LoadSeconds, m.Name)
		if _, ok := failures[m.Name]; !ok {
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(failures[name]), name)
	}
}

// observeSuccess records a request answered at end.
func (m *metrics) observeSuccess(inf *skl2go.Inference, end time.Time) {
	key := successKey{inf.Meta.Name, inf.Meta.Version, inf.Protocol}
	series := cached(&m.success, key, func() *successSeries {
		model, version := key.model, strconv.Itoa(key.version)
		return &successSeries{
			requests: m.requestSuccess.WithLabelValues(model, version, key.protocol),
			rows:     m.inferenceCount.WithLabelValues(model, version, key.protocol),
			request:  m.requestDuration.WithLabelValues(model, version, key.protocol),
			input:    m.inputDuration.WithLabelValues(model, version),
			infer:    m.inferDuration.WithLabelValues(model, version),
			output:   m.outputDuration.WithLabelValues(model, version),
		}
	})
	series.requests.Inc()
	series.rows.Add(float64(inf.Rows))
	series.request.Observe(end.Sub(inf.Start).Seconds())
	series.input.Observe(inf.Decoded.Sub(inf.Start).Seconds())
	series.infer.Observe(inf.Computed.Sub(inf.Decoded).Seconds())
	series.output.Observe(end.Sub(inf.Computed).Seconds())
}

// observeFailure records a request that failed with the given error code.
func (m *metrics) observeFailure(inf *skl2go.Inference, reason string) {
	model, version := inf.Meta.Name, strconv.Itoa(inf.Meta.Version)
	m.requestFailure.WithLabelValues(model, version, inf.Protocol, reason).Inc()
}

// executionCollector reports how often each served model version ran, read
// from the models when scraped: the model, not the request, knows it (a
// dynamic batcher runs the rows of several requests at once).
type executionCollector struct {
	store skl2go.ModelStore
	desc  *prometheus.Desc
}

func (c executionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c executionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, summary := range c.store.Models() {
		for _, version := range summary.Versions {
			model, release, err := c.store.Acquire(summary.Name, version)
			if err != nil {
				continue // unloaded since Models()
			}
			if counter, ok := model.(skl2go.ExecutionCounter); ok {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(counter.Executions()),
					summary.Name, strconv.Itoa(version))
			}
			release()
		}
	}
}

// BatchMetrics records what the dynamic batcher (package batching) does; it
// implements batching.Observer. Per merged run: skl2go_batch_rows and
// skl2go_batch_requests; per request: skl2go_batch_queue_duration_seconds,
// the time from its arrival at the batcher to the start of its run; per
// request that has to wait: skl2go_batch_estimated_wait_seconds, and
// skl2go_shed_total by reason when it is refused.
type BatchMetrics struct {
	rows, requests, queue, estimate *prometheus.HistogramVec
	shed                            *prometheus.CounterVec

	runs sync.Map // model version -> *batchSeries, looked up once (see metrics.success)
}

type versionKey struct {
	model   string
	version int
}

// batchSeries are the series ObserveBatch updates for one model version.
type batchSeries struct{ rows, requests, queue prometheus.Observer }

// NewBatchMetrics registers the batching series in reg.
func NewBatchMetrics(reg prometheus.Registerer) *BatchMetrics {
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets},
			[]string{"model", "version"})
	}
	b := &BatchMetrics{
		rows: histogram("skl2go_batch_rows", "Rows per model run made by the dynamic batcher, by model and version.",
			prometheus.ExponentialBuckets(1, 2, 12)),
		requests: histogram("skl2go_batch_requests", "Requests merged into one model run by the dynamic batcher, by model and version.",
			prometheus.ExponentialBuckets(1, 2, 10)),
		queue: histogram("skl2go_batch_queue_duration_seconds",
			"Time a request waited in the dynamic batcher before its model run started, by model and version.",
			prometheus.ExponentialBuckets(5e-6, 2.5, 13)),
		estimate: histogram("skl2go_batch_estimated_wait_seconds",
			"Wait estimated for a request that has to wait in the dynamic batcher (queued runs times the recent run time), by model and version.",
			prometheus.ExponentialBuckets(5e-6, 2.5, 13)),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skl2go_shed_total",
			Help: "Requests refused with 503 by the dynamic batcher, by model, version and reason (at once: deadline, the estimated wait exceeds --queue-timeout; queue_full, --max-queue requests already wait; timeout: admitted, still waiting after --queue-timeout; late: reached the replica more than --queue-timeout after nginx passed it on, by X-Request-Start)."},
			[]string{"model", "version", "reason"}),
	}
	reg.MustRegister(b.rows, b.requests, b.queue, b.estimate, b.shed)
	return b
}

// ObserveLate counts a request refused because it reached the replica
// past the deadline (Config.Late).
func (b *BatchMetrics) ObserveLate(meta *skl2go.Metadata) {
	b.shed.WithLabelValues(meta.Name, strconv.Itoa(meta.Version), "late").Inc()
}

// ObserveGiveUp implements batching.Observer.
func (b *BatchMetrics) ObserveGiveUp(meta *skl2go.Metadata) {
	b.shed.WithLabelValues(meta.Name, strconv.Itoa(meta.Version), batching.ShedTimeout).Inc()
}

// ObserveAdmission implements batching.Observer.
func (b *BatchMetrics) ObserveAdmission(meta *skl2go.Metadata, wait time.Duration, shed string) {
	model, version := meta.Name, strconv.Itoa(meta.Version)
	if shed != "" {
		b.shed.WithLabelValues(model, version, shed).Inc()
	}
	b.estimate.WithLabelValues(model, version).Observe(wait.Seconds())
}

// ObserveBatch implements batching.Observer.
func (b *BatchMetrics) ObserveBatch(meta *skl2go.Metadata, requests, rows int, waits []time.Duration) {
	series := cached(&b.runs, versionKey{meta.Name, meta.Version}, func() *batchSeries {
		version := strconv.Itoa(meta.Version)
		return &batchSeries{
			rows:     b.rows.WithLabelValues(meta.Name, version),
			requests: b.requests.WithLabelValues(meta.Name, version),
			queue:    b.queue.WithLabelValues(meta.Name, version),
		}
	})
	series.rows.Observe(float64(rows))
	series.requests.Observe(float64(requests))
	for _, w := range waits {
		series.queue.Observe(w.Seconds())
	}
}

// RegistryMetrics records what the MLflow registry poller (package mlflow)
// does; it implements mlflow.Observer: skl2go_registry_up (1 if the last
// poll reached the registry), skl2go_registry_poll_errors_total,
// skl2go_registry_refused_total by model (versions the alias pointed to
// that were refused) and skl2go_registry_version by model (the registry
// version served).
type RegistryMetrics struct {
	up      prometheus.Gauge
	errors  prometheus.Counter
	refused *prometheus.CounterVec
	version *prometheus.GaugeVec
}

// NewRegistryMetrics registers the registry series in reg.
func NewRegistryMetrics(reg prometheus.Registerer) *RegistryMetrics {
	r := &RegistryMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skl2go_registry_up",
			Help: "1 if the last poll of the MLflow registry succeeded, else 0."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "skl2go_registry_poll_errors_total",
			Help: "Polls of the MLflow registry that failed (down, slow, refusing, or a download cut)."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skl2go_registry_refused_total",
			Help: "Registry versions the alias pointed to that were refused (failed checks, other task or inputs), by model."},
			[]string{"model"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skl2go_registry_version",
			Help: "The registry version served, by model."}, []string{"model"}),
	}
	reg.MustRegister(r.up, r.errors, r.refused, r.version)
	return r
}

// ObserveRegistryPoll implements mlflow.Observer.
func (r *RegistryMetrics) ObserveRegistryPoll(err error) {
	if err != nil {
		r.up.Set(0)
		r.errors.Inc()
		return
	}
	r.up.Set(1)
}

// ObserveRegistryRefused implements mlflow.Observer.
func (r *RegistryMetrics) ObserveRegistryRefused(model string, _ int) {
	r.refused.WithLabelValues(model).Inc()
}

// ObserveRegistryServed implements mlflow.Observer.
func (r *RegistryMetrics) ObserveRegistryServed(model string, version int) {
	r.version.WithLabelValues(model).Set(float64(version))
}
