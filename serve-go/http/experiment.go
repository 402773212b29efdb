package http

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	"skl2go/oip"
)

// Experiments (skl2go.Experiment, read by the store from experiment.json):
// a predict or infer request that does not pin a version is answered by
// the version of the variant its key is assigned to, and says so (headers,
// v1's "variant" field, V2's parameters.variant). The experiment's mirror,
// if any, runs the same rows after the answer is written, off the request's
// path: a bounded queue that drops (and counts) what it cannot take, so a
// slow mirror changes no answer or status. It runs a batch a few rows at a
// time, each run only when this replica has no request in flight
// (shadow.idleWait), so as to leave the requests' latency alone: a run the mirror has started holds a CPU until it ends, so
// a short one is all a request arriving meanwhile can wait for.

// Answer headers of an inference request: the model and version that
// answered, and the experiment variant when one was assigned.
const (
	headerModel      = "X-Skl2go-Model"
	headerVersion    = "X-Skl2go-Version"
	headerVariant    = "X-Skl2go-Variant"
	headerExperiment = "X-Skl2go-Experiment"
)

// shadowQueue is the default number of mirror runs that may wait.
const shadowQueue = 64

// shadowTimeout bounds one mirror run.
const shadowTimeout = 10 * time.Second

// shadowChunkRows is how many rows of a request the mirror runs at once:
// few enough that a request arriving during a run of a much slower model
// waits little, enough that a run's fixed cost stays small beside its rows'.
const shadowChunkRows = 16

// The mirror's pause while requests are in flight doubles from
// shadowPauseMin to shadowPauseMax: short pauses resume soon after a lone
// request, long ones cost little CPU under a steady stream.
const (
	shadowPauseMin = 50 * time.Microsecond
	shadowPauseMax = 2 * time.Millisecond
)

// assign returns the version that answers a request for the model that did
// not pin one, and the assignment when an experiment chose it (version 0
// and nil: no experiment, the latest answers).
func (s *Server) assign(header func(string) string, name, requestID string) (int, *skl2go.Assignment) {
	experiments, ok := s.store.(skl2go.ExperimentStore)
	if !ok {
		return 0, nil
	}
	e := experiments.Experiment(name)
	if e == nil {
		return 0, nil
	}
	key := e.AssignmentKey(header, requestID)
	v := e.Assign(key)
	return v.Version, &skl2go.Assignment{Experiment: e.ID, Variant: v.Name, Version: v.Version, Key: key, Mirror: e.Mirror}
}

// AcquireInference implements skl2go.InferenceSteps: it acquires the
// version the request pinned or is assigned (for REST and gRPC alike).
// When an experiment's version has just gone (a reload between the
// lookups), the latest answers instead, without a variant: an experiment
// never fails a request the server can answer.
func (s *Server) AcquireInference(name string, version int, requestID string, header func(string) string) (skl2go.Model, func(), *skl2go.Assignment, error) {
	var a *skl2go.Assignment
	if version == 0 {
		version, a = s.assign(header, name, requestID)
	}
	model, release, err := s.store.Acquire(name, version)
	if err != nil && a != nil {
		s.logger.Warn("experiment variant not loaded; the latest version answers", "model", name,
			"experiment", a.Experiment, "variant", a.Variant, "version", a.Version)
		a = nil
		model, release, err = s.store.Acquire(name, 0)
	}
	if err == nil {
		s.shadow.inflight.Add(1) // until FinishInference, which every acquired request reaches
	}
	return model, release, a, err
}

// setAnswerHeaders names the model, version and variant that answer.
func setAnswerHeaders(w http.ResponseWriter, inf *skl2go.Inference) {
	h := w.Header()
	h.Set(headerModel, inf.Meta.Name)
	h.Set(headerVersion, strconv.Itoa(inf.Meta.Version))
	if a := inf.Assignment; a != nil {
		h.Set(headerExperiment, a.Experiment)
		h.Set(headerVariant, a.Variant)
	}
}

// appendVariant adds "variant" to a v1 answer (a JSON object) when an
// experiment assigned one.
func appendVariant(resp []byte, inf *skl2go.Inference) []byte {
	a := inf.Assignment
	if a == nil || len(resp) == 0 || resp[len(resp)-1] != '}' {
		return resp
	}
	resp = resp[:len(resp)-1]
	resp = append(resp, `,"variant":`...)
	resp = strconv.AppendQuote(resp, a.Variant) // variant names are plain ASCII (skl2go.ValidName)
	return append(resp, '}')
}

// setV2Variant puts the variant in a V2 answer's parameters.
func setV2Variant(req *oip.Request, inf *skl2go.Inference) {
	if a := inf.Assignment; a != nil {
		req.SetParameter("variant", strconv.Quote(a.Variant))
	}
}

// experimentMetrics are the per-variant series of experiments and the
// mirror's.
type experimentMetrics struct {
	requests, failures, rows *prometheus.CounterVec
	duration                 *prometheus.HistogramVec
	shadowRuns, dropped      *prometheus.CounterVec
	agreement                *prometheus.CounterVec
	absDiff                  *prometheus.HistogramVec
}

func newExperimentMetrics(reg prometheus.Registerer) *experimentMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &experimentMetrics{
		requests: counter("skl2go_experiment_requests_total",
			"Inference requests an experiment assigned and that were answered 200, by model, experiment and variant.",
			"model", "experiment", "variant"),
		failures: counter("skl2go_experiment_request_failures_total",
			"Inference requests an experiment assigned that failed, by model, experiment, variant and reason (an error code).",
			"model", "experiment", "variant", "reason"),
		rows: counter("skl2go_experiment_rows_total",
			"Rows answered for requests an experiment assigned, by model, experiment and variant.",
			"model", "experiment", "variant"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "skl2go_experiment_request_duration_seconds",
			Help:    "Time to answer a successful request an experiment assigned, by model, experiment and variant.",
			Buckets: durationBuckets}, []string{"model", "experiment", "variant"}),
		shadowRuns: counter("skl2go_shadow_runs_total",
			"Runs of an experiment's mirror on a copy of an answered request, by model, mirror variant and outcome (ok, error, incompatible).",
			"model", "variant", "outcome"),
		dropped: counter("skl2go_shadow_dropped_total",
			"Mirror runs dropped because the shadow queue was full (the answer was not delayed), by model.",
			"model"),
		agreement: counter("skl2go_shadow_label_agreement_total",
			"Rows a classifier's mirror labelled, by model, mirror variant and whether the label agreed with the answer (true, false).",
			"model", "variant", "agree"),
		absDiff: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "skl2go_shadow_abs_diff",
			Help:    "Mean absolute difference between a regressor's mirror and the answer over a request's rows, by model and mirror variant.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 4, 12)}, []string{"model", "variant"}),
	}
	reg.MustRegister(m.requests, m.failures, m.rows, m.duration, m.shadowRuns, m.dropped, m.agreement, m.absDiff)
	return m
}

// observe records an assigned request: err nil on success.
func (m *experimentMetrics) observe(inf *skl2go.Inference, end time.Time, err error) {
	a := inf.Assignment
	if a == nil {
		return
	}
	if err != nil {
		m.failures.WithLabelValues(inf.Meta.Name, a.Experiment, a.Variant, skl2go.ErrorCode(err)).Inc()
		return
	}
	m.requests.WithLabelValues(inf.Meta.Name, a.Experiment, a.Variant).Inc()
	m.rows.WithLabelValues(inf.Meta.Name, a.Experiment, a.Variant).Add(float64(inf.Rows))
	m.duration.WithLabelValues(inf.Meta.Name, a.Experiment, a.Variant).Observe(end.Sub(inf.Start).Seconds())
}

// shadowJob is one mirror run: the rows answered, and the answer.
type shadowJob struct {
	model     string
	mirror    skl2go.Variant
	meta      *skl2go.Metadata // of the version that answered
	batch     *skl2go.Batch    // decoded for meta; not pooled, so safe to keep
	answer    []skl2go.Output
	requestID string
	logged    bool // the answer went to the inference log: so does the mirror's
}

// shadow runs mirror jobs on one goroutine (one OS thread).
type shadow struct {
	// inflight counts the inference requests between AcquireInference and
	// FinishInference (REST and gRPC): the mirror runs only when it is 0.
	inflight atomic.Int64
	store    skl2go.ModelStore
	metrics  *experimentMetrics
	logger   *slog.Logger
	log      skl2go.InferenceLogger // nil: mirror runs are not logged
	jobs     chan shadowJob
	start    sync.Once
	stop     chan struct{}
	stopped  sync.Once
	// warnPriority logs once that the thread's policy could not be set.
	warnPriority sync.Once
}

func newShadow(store skl2go.ModelStore, metrics *experimentMetrics, logger *slog.Logger, log skl2go.InferenceLogger, queue int) *shadow {
	if queue <= 0 {
		queue = shadowQueue
	}
	return &shadow{store: store, metrics: metrics, logger: logger, log: log, jobs: make(chan shadowJob, queue), stop: make(chan struct{})}
}

// offer queues a mirror run of an answered request, or drops it if the
// queue is full; it never waits.
func (sh *shadow) offer(inf *skl2go.Inference, logged bool) {
	a := inf.Assignment
	if a == nil || a.Mirror == nil || inf.Batch == nil {
		return
	}
	sh.start.Do(func() { go sh.run() })
	job := shadowJob{model: inf.Meta.Name, mirror: *a.Mirror, meta: inf.Meta, batch: inf.Batch, answer: inf.Outputs,
		requestID: inf.RequestID, logged: logged}
	select {
	case sh.jobs <- job:
	default:
		sh.metrics.dropped.WithLabelValues(inf.Meta.Name).Inc()
	}
}

// close stops the worker (queued jobs are dropped).
func (sh *shadow) close() { sh.stopped.Do(func() { close(sh.stop) }) }

// run is the mirror's one worker, on an OS thread of its own. Its runs
// bypass the request path's slots and batches (skl2go.Innermost). The
// model's computation runs under Linux's SCHED_IDLE (CPU that nothing else
// on the machine wants), so that a mirror slower than the answer it copies
// takes only the CPU requests leave; only the computation: a thread that
// the kernel keeps off the CPU while it runs Go code holds one of the Go
// scheduler's Ps (the one, with GOMAXPROCS=1), and this replica's requests
// would wait for it, whereas inside ONNX Runtime (a cgo call) it holds none.
func (sh *shadow) run() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine, so no other inherits its policy
	for {
		select {
		case <-sh.stop:
			return
		case job := <-sh.jobs:
			sh.runJob(job)
		}
	}
}

func (sh *shadow) runJob(job shadowJob) {
	runs := sh.metrics.shadowRuns
	model, release, err := sh.store.Acquire(job.model, job.mirror.Version)
	if err != nil {
		runs.WithLabelValues(job.model, job.mirror.Name, "error").Inc()
		return
	}
	defer release()
	meta := model.Metadata()
	if !sameInputs(meta, job.meta) || meta.Task != job.meta.Task {
		runs.WithLabelValues(job.model, job.mirror.Name, "incompatible").Inc()
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), shadowTimeout)
	defer cancel()
	ctx = skl2go.WithAroundRun(ctx, func() { sh.setIdle(true) }, func() { sh.setIdle(false) })
	outputs, err := skl2go.PredictInChunks(ctx, skl2go.Innermost(model), job.batch, shadowChunkRows, sh.idleWait())
	if err != nil {
		runs.WithLabelValues(job.model, job.mirror.Name, "error").Inc()
		sh.logger.Debug("mirror run failed", "model", job.model, "variant", job.mirror.Name, "err", err)
		return
	}
	runs.WithLabelValues(job.model, job.mirror.Name, "ok").Inc()
	sh.compare(job, meta, outputs)
	if job.logged && sh.log != nil {
		sh.log.Log(context.Background(), &skl2go.InferenceRecord{
			Type: skl2go.ShadowEventType, Time: start, RequestID: job.requestID, Model: job.model,
			Version: meta.Version, Variant: job.mirror.Name, Task: meta.Task, Latency: time.Since(start),
			Inputs: job.batch.Columns, Outputs: outputs})
	}
}

// setIdle puts the worker's thread under SCHED_IDLE or back; a failure is
// logged once, and the mirror then runs at the priority the thread has.
func (sh *shadow) setIdle(idle bool) {
	if err := setThreadIdle(idle); err != nil {
		sh.warnPriority.Do(func() { sh.logger.Warn("cannot set the mirror thread's CPU priority", "idle", idle, "err", err) })
	}
}

// idleWait returns the wait before each of a job's model runs: it returns
// once no request is in flight, pausing (for a while that doubles, bounded)
// as long as one is; an error when ctx ends first. Before a job's first run
// it pauses even when none is: the request the job copies has just been
// answered, and with one thread for Go code (GOMAXPROCS=1) the scheduler
// looks at the network only when the mirror's goroutine waits, so a request
// that arrived meanwhile would not be counted yet. Not before every run: a
// pause lasts a millisecond or more (the Go timers' resolution when the
// process is idle), and a job's runs would then outlast the requests.
func (sh *shadow) idleWait() func(context.Context) error {
	first := true
	return func(ctx context.Context) error {
		pauseFirst := first
		first = false
		return waitIdle(ctx, func() bool { return sh.inflight.Load() == 0 }, pauseFirst, shadowPauseMin, shadowPauseMax, sleep)
	}
}

// waitIdle returns once idle() is true, pausing between looks for a while
// that doubles from least to most (and once before the first look when
// pauseFirst); an error when ctx ends first.
func waitIdle(ctx context.Context, idle func() bool, pauseFirst bool, least, most time.Duration,
	pause func(context.Context, time.Duration) error) error {
	d := least
	if pauseFirst {
		if err := pause(ctx, d); err != nil {
			return err
		}
		d = min(2*d, most)
	}
	for ; !idle(); d = min(2*d, most) {
		if err := pause(ctx, d); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// sleep waits d, or less when ctx ends (its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// compare records how far the mirror is from the answer: the mean absolute
// difference of a regressor's rows, the label agreement of a classifier's.
func (sh *shadow) compare(job shadowJob, meta *skl2go.Metadata, outputs []skl2go.Output) {
	if len(outputs) == 0 || len(job.answer) == 0 || job.batch.Rows == 0 {
		return
	}
	if meta.Task == skl2go.Classification {
		got, want := outputs[0].Int64, job.answer[0].Int64
		agree, differ := 0, 0
		for i := 0; i < len(got) && i < len(want); i++ {
			if got[i] == want[i] {
				agree++
			} else {
				differ++
			}
		}
		sh.metrics.agreement.WithLabelValues(job.model, job.mirror.Name, "true").Add(float64(agree))
		sh.metrics.agreement.WithLabelValues(job.model, job.mirror.Name, "false").Add(float64(differ))
		return
	}
	got, want := outputs[0].Float64s(), job.answer[0].Float64s()
	n := min(len(got), len(want))
	if n == 0 {
		return
	}
	sum := 0.0
	for i := range n {
		d := got[i] - want[i]
		if d < 0 {
			d = -d
		}
		sum += d
	}
	sh.metrics.absDiff.WithLabelValues(job.model, job.mirror.Name).Observe(sum / float64(n))
}

// sameInputs reports whether a batch decoded for b can run on a: the same
// inputs, in the same order, of the same types.
func sameInputs(a, b *skl2go.Metadata) bool {
	if len(a.Inputs) != len(b.Inputs) {
		return false
	}
	for i := range a.Inputs {
		if a.Inputs[i].Name != b.Inputs[i].Name || a.Inputs[i].Type != b.Inputs[i].Type {
			return false
		}
	}
	return true
}
