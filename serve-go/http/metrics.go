package http

import (
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"skl2go"
)

// metrics are the server's Prometheus series. Label values are bounded:
// model and version come from the store, never from an unknown URL.
type metrics struct {
	predictRequests *prometheus.CounterVec
	predictDuration *prometheus.HistogramVec
	predictRows     *prometheus.CounterVec
	httpRequests    *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, store skl2go.ModelStore, limiter *skl2go.Limiter) *metrics {
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
	reg.MustRegister(m.predictRequests, m.predictDuration, m.predictRows, m.httpRequests, newStoreCollector(store),
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
	return m
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// storeCollector reports, at each scrape, which versions the store serves
// and how many versions it refused: the signs of a model roll-out.
type storeCollector struct {
	store                    skl2go.ModelStore
	latest, loaded, refusals *prometheus.Desc
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
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.latest
	ch <- c.loaded
	ch <- c.refusals
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
		if _, ok := failures[m.Name]; !ok {
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(failures[name]), name)
	}
}
