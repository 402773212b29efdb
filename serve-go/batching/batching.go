// Package batching merges concurrent predictions for one model version into
// fewer runs of the model (dynamic batching, as Triton's dynamic batcher).
//
// A run of ONNX Runtime has a fixed cost (about 10 µs for the linear trip
// model: tensors, dispatch of every node) and a small cost per row, so many
// single-row requests cost much less run together. The batcher is a
// skl2go.Model wrapping another, with no goroutine of its own (group
// commit): a request that finds a run slot free runs the model itself, on
// every request queued by then (up to MaxRows rows), and hands each its
// rows; a request that finds every slot busy queues, and the run that
// finishes next passes the lead to the oldest queued request, which runs
// everything queued meanwhile. Before it takes the queue, a run yields to
// the goroutines ready to run, so that requests already read off the
// network join it. Under light load a request runs at once, alone, at no
// extra cost; under heavy load runs grow to MaxRows. With MaxDelay, a run
// whose request came less than MaxDelay after the previous one waits up to
// MaxDelay for more instead (a timer: it fires late, about 1 ms, on an idle
// process).
//
// Load shedding is bounded by time, not by a count of requests: 256 queued
// single-row requests are only a few runs of the model. A request that
// would queue is refused at once (EOVERLOADED, a fast 503) only when the
// wait estimated for it, the runs queued ahead of it (and its own) times
// the recent duration of a run, exceeds MaxWait; MaxQueue is a safety cap
// on memory, far above what the deadline admits in normal use.
package batching

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"skl2go"
	"skl2go/repository"
)

// Options configure a batcher.
type Options struct {
	// MaxRows is the most rows one run takes. Requests with at least this
	// many rows run alone, straight away.
	MaxRows int
	// MaxDelay is how long a run waits for more requests before it starts
	// (unless it has MaxRows rows), when requests come that close together.
	// 0: take what is queued and run.
	MaxDelay time.Duration
	// Runners is how many runs may execute at once (default GOMAXPROCS).
	Runners int
	// MaxWait is the deadline of a queued request (0: none): a request whose
	// estimated wait exceeds it is refused at once with EOVERLOADED, and a
	// request still waiting after it gives up with EOVERLOADED (the estimate
	// lags behind a sudden change of run time). A fast 503 rather than a
	// queue no client waits for.
	MaxWait time.Duration
	// MaxQueue is a hard cap on the requests waiting for a run (0: none), a
	// bound on memory: past it, Predict fails at once with EOVERLOADED.
	MaxQueue int
	// Now is the clock of the estimates (nil: time.Now); tests pass a fake.
	Now func() time.Time
}

// Reasons a request is shed, as Observer.ObserveAdmission is told.
const (
	ShedDeadline  = "deadline"   // its estimated wait exceeds MaxWait
	ShedQueueFull = "queue_full" // MaxQueue requests already wait
	ShedTimeout   = "timeout"    // admitted, it was still waiting after MaxWait and gave up
)

// Observer is told about every run; the HTTP package's metrics implement
// it. waits holds, for each request in the run, the time from its Predict
// call to the start of the run.
type Observer interface {
	ObserveBatch(meta *skl2go.Metadata, requests, rows int, waits []time.Duration)
	// ObserveAdmission is told about every request that will wait (others
	// queued, or every run slot busy): its estimated wait and, if it was refused, why (ShedDeadline
	// or ShedQueueFull; "" if admitted).
	ObserveAdmission(meta *skl2go.Metadata, wait time.Duration, shed string)
	// ObserveGiveUp is told about a request that was admitted but gave up
	// after MaxWait (ShedTimeout): the estimate lagged behind the run time.
	ObserveGiveUp(meta *skl2go.Metadata)
}

// Model is a batching skl2go.Model.
type Model struct {
	inner    skl2go.Model
	opts     Options
	observer Observer

	mu      sync.Mutex
	queue   []*request // waiting for a run, oldest first (abandoned ones are dropped lazily)
	leaders int        // runs being gathered or executed, at most opts.Runners
	closed  bool
	done    chan struct{} // closed by Close: a gathering run stops waiting
	idle    *sync.Cond    // signalled when leaders drops to 0 after Close
	changed chan struct{} // with MaxDelay: closed (and replaced) when the queue changes
	last    time.Time     // the latest request's arrival
	rows    int           // rows of the requests in queue (abandoned ones until dropped)
	waiting atomic.Int64  // requests in Predict whose run has not started
	runTime atomic.Int64  // recent duration of a run, nanoseconds (moving average; 0: none yet)
}

var _ skl2go.Model = (*Model)(nil)
var _ skl2go.ExecutionCounter = (*Model)(nil)

type request struct {
	ctx    context.Context
	batch  *skl2go.Batch
	queued time.Time
	busy   bool         // the previous request arrived less than MaxDelay before this one
	state  atomic.Int32 // waiting → leading → running, or waiting → abandoned
	// wake carries at most a lead message and then the result: buffered for
	// both, so that no sender ever waits.
	wake chan message
}

type message struct {
	lead    bool // run what is queued, then wait for the result as before
	outputs []skl2go.Output
	err     error
}

// Request states. A request leaves waiting once: taken into a run, promoted
// to lead (and then taken), or abandoned by its caller (never run).
const (
	waiting int32 = iota
	leading
	running
	abandoned
)

// New wraps inner. observer may be nil.
func New(inner skl2go.Model, opts Options, observer Observer) (*Model, error) {
	if opts.MaxRows < 1 {
		return nil, fmt.Errorf("batching: MaxRows must be at least 1, got %d", opts.MaxRows)
	}
	if opts.MaxDelay < 0 {
		return nil, fmt.Errorf("batching: MaxDelay must not be negative, got %s", opts.MaxDelay)
	}
	if opts.Runners < 1 {
		opts.Runners = runtime.GOMAXPROCS(0)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Model{inner: inner, opts: opts, observer: observer, changed: make(chan struct{}), done: make(chan struct{})}
	m.idle = sync.NewCond(&m.mu)
	return m, nil
}

// Metadata implements skl2go.Model.
func (m *Model) Metadata() *skl2go.Metadata { return m.inner.Metadata() }

// Executions implements skl2go.ExecutionCounter with the wrapped model's count.
func (m *Model) Executions() uint64 {
	if c, ok := m.inner.(skl2go.ExecutionCounter); ok {
		return c.Executions()
	}
	return 0
}

// Unwrap returns the model the batcher runs.
func (m *Model) Unwrap() skl2go.Model { return m.inner }

// Waiting returns how many requests wait for their run.
func (m *Model) Waiting() int { return int(m.waiting.Load()) }

var errClosed = skl2go.Errorf(skl2go.EUNAVAILABLE, "the model is being unloaded; retry")

// ErrClosed reports whether err is the batcher's answer to requests it
// could not run because it was closing.
func ErrClosed(err error) bool { return errors.Is(err, errClosed) }

// Predict implements skl2go.Model: it runs the batch with whatever else is
// queued, or queues it, and returns its rows' outputs.
func (m *Model) Predict(ctx context.Context, batch *skl2go.Batch) ([]skl2go.Output, error) {
	if batch.Rows >= m.opts.MaxRows {
		return m.inner.Predict(ctx, batch)
	}
	r := &request{ctx: ctx, batch: batch, queued: m.opts.Now(), wake: make(chan message, 2)}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed
	}
	if m.rows > 0 || m.leaders >= m.opts.Runners { // it will wait: for the runs in progress, at least
		wait, shed := m.admit(batch.Rows)
		if m.observer != nil {
			m.observer.ObserveAdmission(m.inner.Metadata(), wait, shed)
		}
		if shed != "" {
			m.mu.Unlock()
			return nil, m.overloaded(shed, wait)
		}
	}
	m.waiting.Add(1)
	m.queue = append(m.queue, r)
	m.rows += batch.Rows
	r.busy, m.last = r.queued.Sub(m.last) < m.opts.MaxDelay, r.queued
	m.queueChanged()
	lead := m.leaders < m.opts.Runners
	if lead {
		m.leaders++
		r.state.Store(leading)
	}
	m.mu.Unlock()
	if lead {
		m.lead(r)
	}
	return m.await(r)
}

// admit estimates the wait of a request of rows rows joining the queue and
// says why it must be refused, if it must; m.mu is held. The queued rows
// (its own included) make runs of MaxRows, Runners at a time, each lasting
// the recent run time: under load, when a queue forms, runs are full, so
// the recent runs are the size of the ones it waits for. No estimate before
// the first run.
func (m *Model) admit(rows int) (time.Duration, string) {
	run := time.Duration(m.runTime.Load())
	runs := (m.rows + rows + m.opts.MaxRows - 1) / m.opts.MaxRows
	wait := time.Duration((runs+m.opts.Runners-1)/m.opts.Runners) * run
	switch {
	case m.opts.MaxQueue > 0 && int(m.waiting.Load()) >= m.opts.MaxQueue:
		return wait, ShedQueueFull
	case m.opts.MaxWait > 0 && wait > m.opts.MaxWait:
		return wait, ShedDeadline
	}
	return wait, ""
}

// observeRun folds a run's duration into the recent run time (a moving
// average weighing the latest run 1/4: it follows a change of load within
// a few runs).
func (m *Model) observeRun(d time.Duration) {
	for {
		old := m.runTime.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/4
		}
		if m.runTime.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

// RunTime returns the recent duration of a run (0 before the first).
func (m *Model) RunTime() time.Duration { return time.Duration(m.runTime.Load()) }

// await waits for r's result, leading when asked to; the caller may leave
// (ctx) or give up (MaxWait) only while r is still waiting.
func (m *Model) await(r *request) ([]skl2go.Output, error) {
	var timeout <-chan time.Time
	if m.opts.MaxWait > 0 && r.state.Load() == waiting {
		timer := time.NewTimer(m.opts.MaxWait - m.opts.Now().Sub(r.queued))
		defer timer.Stop()
		timeout = timer.C
	}
	for {
		select {
		case msg := <-r.wake:
			if msg.lead {
				m.lead(r)
				continue
			}
			return msg.outputs, msg.err
		case <-r.ctx.Done():
			if r.state.CompareAndSwap(waiting, abandoned) {
				m.waiting.Add(-1)
				return nil, r.ctx.Err()
			}
			if r.state.Load() == leading { // promoted: the others need it to lead first
				if msg := <-r.wake; msg.lead {
					m.lead(r)
				}
			}
			return nil, r.ctx.Err() // its run goes on for the others; the result is dropped
		case <-timeout:
			timeout = nil
			if r.state.CompareAndSwap(waiting, abandoned) {
				m.waiting.Add(-1)
				if m.observer != nil {
					m.observer.ObserveGiveUp(m.inner.Metadata())
				}
				return nil, m.overloaded("", 0)
			}
		}
	}
}

// lead runs what is queued, from the front, until r (the leader) has been
// in a run, then passes the lead to the oldest request still waiting, if
// any. A request in state leading thus always has a lead loop that will
// see it run.
func (m *Model) lead(r *request) {
	for {
		if m.opts.MaxDelay > 0 && r.busy { // alone, at low load: nobody to wait for
			m.gather(r, r.queued.Add(m.opts.MaxDelay))
		} else {
			m.yield()
		}
		if taken := m.take(); len(taken) > 0 {
			m.run(taken)
		}
		m.mu.Lock()
		if r.state.Load() == leading { // not run yet: requests ahead of it filled the run
			m.mu.Unlock()
			continue
		}
		next := m.promote()
		if next == nil {
			m.leaders--
			if m.closed && m.leaders == 0 {
				m.idle.Broadcast()
			}
			m.mu.Unlock()
			return
		}
		// Sent under the lock: no run can take next, and answer it, before
		// the lead message is in its buffer (the lead must not be lost).
		next.wake <- message{lead: true}
		m.mu.Unlock()
		return
	}
}

// promote makes the oldest waiting request a leader and returns it (nil if
// none waits), dropping abandoned requests from the front; m.mu is held.
func (m *Model) promote() *request {
	for len(m.queue) > 0 && m.queue[0].state.Load() == abandoned {
		m.rows -= m.queue[0].batch.Rows
		m.queue[0] = nil
		m.queue = m.queue[1:]
	}
	for _, q := range m.queue {
		if q.state.CompareAndSwap(waiting, leading) {
			return q
		}
	}
	return nil
}

// gather waits until MaxRows rows are queued, the deadline passes, or r
// has been taken into another leader's run.
func (m *Model) gather(r *request, deadline time.Time) {
	timer := time.NewTimer(deadline.Sub(m.opts.Now()))
	defer timer.Stop()
	for {
		rows := m.queued()
		m.mu.Lock()
		changed := m.changed
		m.mu.Unlock()
		if rows >= m.opts.MaxRows || r.state.Load() != leading {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-m.done:
			return
		}
	}
}

// yield lets the goroutines that are ready to run go first, as long as that
// brings requests into the queue: after the network poller wakes several
// connections at once, their requests join this run instead of each running
// alone. No timer: when nothing else is ready, Gosched returns at once.
func (m *Model) yield() {
	for n, tries := m.queued(), 0; n < m.opts.MaxRows && tries < 8; tries++ {
		runtime.Gosched()
		k := m.queued()
		if k == n {
			return
		}
		n = k
	}
}

// queued returns how many rows are queued.
func (m *Model) queued() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rows
}

// queueChanged wakes the runs gathering for MaxDelay; m.mu is held.
func (m *Model) queueChanged() {
	if m.opts.MaxDelay > 0 {
		close(m.changed)
		m.changed = make(chan struct{})
	}
}

// take removes up to MaxRows rows of requests from the front of the queue,
// claiming each for the run (abandoned ones are dropped).
func (m *Model) take() []*request {
	m.mu.Lock()
	defer m.mu.Unlock()
	var taken []*request
	rows, n := 0, 0
	for ; n < len(m.queue); n++ {
		q := m.queue[n]
		if len(taken) > 0 && rows+q.batch.Rows > m.opts.MaxRows {
			break
		}
		m.rows -= q.batch.Rows
		if q.state.CompareAndSwap(waiting, running) || q.state.CompareAndSwap(leading, running) {
			m.waiting.Add(-1)
			taken = append(taken, q)
			rows += q.batch.Rows
		}
	}
	m.queue = append(m.queue[:0], m.queue[n:]...)
	if len(taken) > 0 {
		m.queueChanged()
	}
	return taken
}

// run merges the requests' batches, runs the model once, and gives each
// request its rows.
func (m *Model) run(taken []*request) {
	started := m.opts.Now()
	batch := taken[0].batch
	if len(taken) > 1 {
		batch = merge(taken)
	}
	if m.observer != nil {
		waits := make([]time.Duration, len(taken))
		for i, r := range taken {
			waits[i] = started.Sub(r.queued)
		}
		m.observer.ObserveBatch(m.inner.Metadata(), len(taken), batch.Rows, waits)
	}
	// The run serves several callers: one caller leaving must not cancel it.
	outputs, err := m.inner.Predict(context.Background(), batch)
	if err == nil {
		m.observeRun(m.opts.Now().Sub(started))
	}
	var parts [][]skl2go.Output
	switch {
	case err != nil:
	case len(taken) == 1:
		parts = [][]skl2go.Output{outputs}
	default:
		parts, err = split(outputs, taken)
	}
	for i, r := range taken {
		if err != nil {
			r.wake <- message{err: err}
		} else {
			r.wake <- message{outputs: parts[i]}
		}
	}
}

// overloaded is the error of a request refused (reason) or given up
// (reason ""), with the wait estimated for it.
func (m *Model) overloaded(reason string, wait time.Duration) error {
	switch reason {
	case ShedQueueFull:
		return skl2go.Errorf(skl2go.EOVERLOADED, "server overloaded: %d predictions already wait for a model run (at most %d); retry shortly",
			m.waiting.Load(), m.opts.MaxQueue)
	case ShedDeadline:
		return skl2go.Errorf(skl2go.EOVERLOADED, "server overloaded: the estimated wait for a model run is %s, over the %s deadline; retry shortly",
			wait.Round(time.Microsecond), m.opts.MaxWait)
	}
	return skl2go.Errorf(skl2go.EOVERLOADED, "server overloaded: no model run within the %s deadline; retry shortly", m.opts.MaxWait)
}

// Close stops taking requests, answers those still waiting, waits for the
// runs in progress, then closes the wrapped model.
func (m *Model) Close() error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.done)
		for _, r := range m.queue {
			if r.state.CompareAndSwap(waiting, running) || r.state.CompareAndSwap(leading, running) {
				m.waiting.Add(-1)
				r.wake <- message{err: errClosed}
			}
		}
		m.queue, m.rows = nil, 0
	}
	for m.leaders > 0 {
		m.idle.Wait()
	}
	m.mu.Unlock()
	return m.inner.Close()
}

// merge concatenates the requests' batches, column by column.
func merge(taken []*request) *skl2go.Batch {
	rows := 0
	for _, r := range taken {
		rows += r.batch.Rows
	}
	first := taken[0].batch
	merged := &skl2go.Batch{Rows: rows, Columns: make([]skl2go.Column, len(first.Columns))}
	for i, col := range first.Columns {
		out := &merged.Columns[i]
		out.Name, out.Type = col.Name, col.Type
		out.Values.Grow(col.Type, rows)
		for _, r := range taken {
			out.Values.Append(col.Type, &r.batch.Columns[i].Values)
		}
	}
	return merged
}

// split cuts each output into the requests' rows, in order. The parts share
// the merged output's memory (capped, so that appending to one cannot touch
// the next).
func split(outputs []skl2go.Output, taken []*request) ([][]skl2go.Output, error) {
	total := 0
	for _, r := range taken {
		total += r.batch.Rows
	}
	parts := make([][]skl2go.Output, len(taken))
	for i := range parts {
		parts[i] = make([]skl2go.Output, len(outputs))
	}
	for o, out := range outputs {
		if len(out.Shape) == 0 || out.Shape[0] != int64(total) {
			return nil, fmt.Errorf("batching: output %s has shape %v for %d merged rows", out.Name, out.Shape, total)
		}
		width := 1
		for _, d := range out.Shape[1:] {
			width *= int(d)
		}
		start := 0
		for i, r := range taken {
			end := start + r.batch.Rows*width
			shape := append([]int64{int64(r.batch.Rows)}, out.Shape[1:]...)
			parts[i][o] = skl2go.Output{Name: out.Name, Type: out.Type, Shape: shape, Values: out.Values.Slice(out.Type, start, end)}
			start = end
		}
	}
	return parts, nil
}

// Loader returns the loader a server's store loads versions with: load
// (onnx.Runtime.Load, which checks the version), the limiter bounding the
// runs of every model, and, when opts.MaxRows > 0, a batcher in front:
// merged runs take the limiter's slots, and requests waiting in the
// batcher are bounded like the limiter's queue. The HTTP server and the
// stream consumer load through it alike.
func Loader(load repository.Loader, limiter *skl2go.Limiter, opts Options, observer Observer) repository.Loader {
	return func(e repository.Entry) (skl2go.Model, error) {
		m, err := load(e)
		if err != nil {
			return nil, err
		}
		limited := limiter.Wrap(m)
		if opts.MaxRows == 0 {
			return limited, nil
		}
		batched, err := New(limited, opts, observer)
		if err != nil {
			limited.Close()
			return nil, err
		}
		return batched, nil
	}
}
