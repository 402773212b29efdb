package http

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series. Label values are bounded:
// model and version come from the store, never from an unknown URL.
type metrics struct {
	predictRequests *prometheus.CounterVec
	predictDuration *prometheus.HistogramVec
	predictRows     *prometheus.CounterVec
	httpRequests    *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		predictRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skl2go_predict_requests_total",
			Help: "Predict requests for a loaded model, by model, version and HTTP status code.",
		}, []string{"model", "version", "code"}),
		predictDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skl2go_predict_duration_seconds",
			Help:    "Time to answer a predict request (decode, run, encode), by model and version.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 13), // 50µs … ~3s
		}, []string{"model", "version"}),
		predictRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skl2go_predict_rows_total",
			Help: "Rows (instances) predicted, by model and version.",
		}, []string{"model", "version"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skl2go_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
	}
	reg.MustRegister(m.predictRequests, m.predictDuration, m.predictRows, m.httpRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
