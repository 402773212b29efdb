package http

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series, named after Triton's
// nv_inference_* family under the skl2go_ prefix, with Prometheus units
// (_total counters, _seconds histograms). Label values are bounded: model
// and version come from the store, never from an unknown URL; protocol is
// v1 or v2; reason is an error code.
//
// An inference is one row; an execution is one run of the model. Without
// dynamic batching a request is one execution of its rows; a batcher that
// merges requests runs the model less often than requests arrive.
type metrics struct {
	requestSuccess  *prometheus.CounterVec
	requestFailure  *prometheus.CounterVec
	inferenceCount  *prometheus.CounterVec
	execCount       *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	inputDuration   *prometheus.HistogramVec
	inferDuration   *prometheus.HistogramVec
	outputDuration  *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
}

// durationBuckets span 50µs to about 3s.
var durationBuckets = prometheus.ExponentialBuckets(50e-6, 2.5, 13)

func newMetrics(reg *prometheus.Registry) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, labels)
	}
	m := &metrics{
		requestSuccess: counter("skl2go_inference_request_success_total",
			"Inference requests (v1 predict, v2 infer) answered 200, by model, version and protocol.",
			"model", "version", "protocol"),
		requestFailure: counter("skl2go_inference_request_failure_total",
			"Inference requests for a loaded model that failed, by model, version, protocol and reason "+
				"(invalid, too_large, unsupported_media_type, unavailable, internal).",
			"model", "version", "protocol", "reason"),
		inferenceCount: counter("skl2go_inference_count_total",
			"Inferences (rows) answered, by model, version and protocol.",
			"model", "version", "protocol"),
		execCount: counter("skl2go_inference_exec_count_total",
			"Model executions (runs of ONNX Runtime, each on one batch of rows), by model and version.",
			"model", "version"),
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
	}
	reg.MustRegister(m.requestSuccess, m.requestFailure, m.inferenceCount, m.execCount,
		m.requestDuration, m.inputDuration, m.inferDuration, m.outputDuration, m.httpRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// observeSuccess records a request answered at end.
func (m *metrics) observeSuccess(inf *inference, end time.Time) {
	model, version := inf.meta.Name, strconv.Itoa(inf.meta.Version)
	m.requestSuccess.WithLabelValues(model, version, inf.protocol).Inc()
	m.inferenceCount.WithLabelValues(model, version, inf.protocol).Add(float64(inf.rows))
	m.execCount.WithLabelValues(model, version).Inc()
	m.requestDuration.WithLabelValues(model, version, inf.protocol).Observe(end.Sub(inf.start).Seconds())
	m.inputDuration.WithLabelValues(model, version).Observe(inf.decoded.Sub(inf.start).Seconds())
	m.inferDuration.WithLabelValues(model, version).Observe(inf.computed.Sub(inf.decoded).Seconds())
	m.outputDuration.WithLabelValues(model, version).Observe(end.Sub(inf.computed).Seconds())
}

// observeFailure records a request that failed with the given error code;
// the model counts as executed if it ran.
func (m *metrics) observeFailure(inf *inference, reason string) {
	model, version := inf.meta.Name, strconv.Itoa(inf.meta.Version)
	m.requestFailure.WithLabelValues(model, version, inf.protocol, reason).Inc()
	if !inf.computed.IsZero() {
		m.execCount.WithLabelValues(model, version).Inc()
	}
}
