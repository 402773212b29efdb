package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the stream consumer's Prometheus series, labelled by model.
type Metrics struct {
	consumed     *prometheus.CounterVec
	produced     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	batchRows    *prometheus.HistogramVec
	lag          *prometheus.GaugeVec
	endToEnd     *prometheus.HistogramVec
}

// NewMetrics registers the stream metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skl2go_stream_consumed_total", Help: "Events consumed from the input topic.",
		}, []string{"model"}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skl2go_stream_produced_total", Help: "Prediction records acknowledged by the broker, by model version.",
		}, []string{"model", "version"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skl2go_stream_dead_lettered_total", Help: "Events sent to the dead-letter topic (acknowledged), by error code.",
		}, []string{"model", "code"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skl2go_stream_batch_events", Help: "Events scored per batch (one poll).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}, []string{"model"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skl2go_stream_consumer_lag", Help: "Records in the partition after the last one polled (high watermark - next offset).",
		}, []string{"model", "topic", "partition"}),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skl2go_stream_end_to_end_seconds", Help: "From the event's time (event_time, else its record timestamp) to its prediction acknowledged.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"model"}),
	}
	reg.MustRegister(m.consumed, m.produced, m.deadLettered, m.batchRows, m.lag, m.endToEnd)
	return m
}
