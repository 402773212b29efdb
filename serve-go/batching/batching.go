// Package batching merges concurrent predictions for one model version into
// fewer runs of the model (dynamic batching, as Triton's dynamic batcher).
//
// A run of ONNX Runtime has a fixed cost (about 10 µs for the linear trip
// model: tensors, kernel dispatch for every node) and a small cost per row,
// so under load many single-row requests cost much less run together. The
// batcher is a skl2go.Model wrapping another: each Predict call queues its
// batch; a collector merges queued batches, up to MaxRows rows, and hands
// the merged batch to one of a few runners; the outputs are split back, each
// caller getting its own rows. A batch waits at most MaxDelay for others to
// join while a runner is free; while every runner is busy, batches keep
// growing, which is when merging pays most.
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
)

// Options configure a batcher.
type Options struct {
	// MaxRows is the most rows a merged run takes. Requests with at least
	// this many rows run alone, straight away.
	MaxRows int
	// MaxDelay is how long the first request of a batch may wait for others
	// while a runner is free. 0: batch only what queues while runners are busy.
	MaxDelay time.Duration
	// Runners is how many merged runs may execute at once (default GOMAXPROCS).
	Runners int
	// MaxQueue bounds the requests waiting in the batcher for their run
	// (0: no bound), and MaxWait how long each may wait (0: no bound).
	// Past either, Predict fails at once with EOVERLOADED, as the server's
	// limiter does: a fast 503 rather than a queue no client waits for.
	MaxQueue int
	MaxWait  time.Duration
}

// Observer is told about every merged run; the HTTP package's metrics
// implement it. waits holds, for each request in the run, the time from its
// Predict call to the start of the run.
type Observer interface {
	ObserveBatch(meta *skl2go.Metadata, requests, rows int, waits []time.Duration)
}

// Model is a batching skl2go.Model. It must be closed to stop its collector.
type Model struct {
	inner    skl2go.Model
	opts     Options
	observer Observer
	queue    chan *request // unbuffered: a send is a hand-over to the collector
	runners  chan struct{} // one token per run in progress
	waiting  atomic.Int64  // requests in Predict whose run has not started
	closing  chan struct{}
	stopped  chan struct{} // the collector has returned
	running  sync.WaitGroup
	once     sync.Once
}

var _ skl2go.Model = (*Model)(nil)
var _ skl2go.ExecutionCounter = (*Model)(nil)

type request struct {
	ctx    context.Context
	batch  *skl2go.Batch
	queued time.Time
	state  atomic.Int32 // waiting, then running (claimed by a run) or abandoned (by its caller)
	result chan result  // buffered: the runner never waits for a caller that left
}

// Request states: exactly one of the run and the caller moves a request out
// of waiting, so a request is never both run and given up.
const (
	waiting int32 = iota
	running
	abandoned
)

type result struct {
	outputs []skl2go.Output
	err     error
}

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
	m := &Model{inner: inner, opts: opts, observer: observer, queue: make(chan *request),
		runners: make(chan struct{}, opts.Runners), closing: make(chan struct{}), stopped: make(chan struct{})}
	go m.collect()
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

// Predict implements skl2go.Model: it queues the batch to run with others
// and waits for its rows' outputs, or for ctx.
func (m *Model) Predict(ctx context.Context, batch *skl2go.Batch) ([]skl2go.Output, error) {
	if batch.Rows >= m.opts.MaxRows {
		return m.inner.Predict(ctx, batch)
	}
	if n := m.waiting.Add(1); m.opts.MaxQueue > 0 && n > int64(m.opts.MaxQueue) {
		m.waiting.Add(-1)
		return nil, m.overloaded()
	}
	r := &request{ctx: ctx, batch: batch, queued: time.Now(), result: make(chan result, 1)}
	var timeout <-chan time.Time
	if m.opts.MaxWait > 0 {
		timer := time.NewTimer(m.opts.MaxWait)
		defer timer.Stop()
		timeout = timer.C
	}
	giveUp := func(err error) ([]skl2go.Output, error) {
		if r.state.CompareAndSwap(waiting, abandoned) {
			m.waiting.Add(-1)
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // its run has started: the others still get theirs
		}
		res := <-r.result // started before the deadline: the run is about to answer
		return res.outputs, res.err
	}
	select {
	case m.queue <- r:
	case <-ctx.Done():
		return giveUp(ctx.Err())
	case <-timeout:
		return giveUp(m.overloaded())
	case <-m.closing:
		return giveUp(errClosed)
	}
	for {
		select {
		case res := <-r.result:
			return res.outputs, res.err
		case <-ctx.Done():
			return giveUp(ctx.Err())
		case <-timeout:
			timeout = nil
			if r.state.Load() == waiting {
				return giveUp(m.overloaded())
			}
		}
	}
}

// Waiting returns how many requests wait in the batcher for their run.
func (m *Model) Waiting() int { return int(m.waiting.Load()) }

func (m *Model) overloaded() error {
	return skl2go.Errorf(skl2go.EOVERLOADED, "server overloaded: %d predictions waiting for a model run (at most %d, for %s); retry shortly",
		m.waiting.Load(), m.opts.MaxQueue, m.opts.MaxWait)
}

var errClosed = skl2go.Errorf(skl2go.EUNAVAILABLE, "the model is being unloaded; retry")

// Close stops taking requests, answers those queued, waits for the runs in
// progress, then closes the wrapped model.
func (m *Model) Close() error {
	m.once.Do(func() { close(m.closing) })
	<-m.stopped
	m.running.Wait()
	return m.inner.Close()
}

// collect gathers queued requests into batches and starts their runs.
func (m *Model) collect() {
	defer close(m.stopped)
	var carry *request // took the batch over MaxRows: it opens the next one
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-m.queue:
			case <-m.closing:
				return
			}
		}
		pending, rows := []*request{first}, first.batch.Rows
		// Until the delay is over, a free runner does not close the batch.
		var delay <-chan time.Time
		runner := m.runners
		if m.opts.MaxDelay > 0 {
			timer.Reset(m.opts.MaxDelay)
			delay, runner = timer.C, nil
		}
	gather:
		for rows < m.opts.MaxRows {
			select {
			case r := <-m.queue:
				if rows+r.batch.Rows > m.opts.MaxRows {
					carry = r
					break gather
				}
				pending, rows = append(pending, r), rows+r.batch.Rows
			case <-delay:
				delay, runner = nil, m.runners
			case runner <- struct{}{}:
				m.start(pending)
				pending = nil
				break gather
			case <-m.closing:
				m.fail(append(pending, carry), errClosed)
				return
			}
		}
		timer.Stop()        // Go ≥ 1.23: no stale tick is left in timer.C
		if pending != nil { // full: wait for a runner
			select {
			case m.runners <- struct{}{}:
				m.start(pending)
			case <-m.closing:
				m.fail(append(pending, carry), errClosed)
				return
			}
		}
	}
}

// start runs pending on a runner already acquired.
func (m *Model) start(pending []*request) {
	m.running.Add(1)
	go func() {
		defer m.running.Done()
		defer func() { <-m.runners }()
		m.run(pending)
	}()
}

// run merges the batches of the requests still waiting, runs the model
// once, and gives each request its rows.
func (m *Model) run(pending []*request) {
	live := pending[:0]
	for _, r := range pending {
		if r.state.CompareAndSwap(waiting, running) { // else its caller has given up
			m.waiting.Add(-1)
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	started := time.Now()
	batch := live[0].batch
	if len(live) > 1 {
		batch = merge(live)
	}
	if m.observer != nil {
		waits := make([]time.Duration, len(live))
		for i, r := range live {
			waits[i] = started.Sub(r.queued)
		}
		m.observer.ObserveBatch(m.inner.Metadata(), len(live), batch.Rows, waits)
	}
	// The run serves several callers: one caller leaving must not cancel it.
	outputs, err := m.inner.Predict(context.Background(), batch)
	if err != nil {
		for _, r := range live {
			r.result <- result{err: err}
		}
		return
	}
	if len(live) == 1 {
		live[0].result <- result{outputs: outputs}
		return
	}
	parts, err := split(outputs, live)
	for i, r := range live {
		if err != nil {
			r.result <- result{err: err}
		} else {
			r.result <- result{outputs: parts[i]}
		}
	}
}

func (m *Model) fail(pending []*request, err error) {
	for _, r := range pending {
		if r != nil && r.state.CompareAndSwap(waiting, running) {
			m.waiting.Add(-1)
			r.result <- result{err: err}
		}
	}
}

// merge concatenates the requests' batches, column by column.
func merge(live []*request) *skl2go.Batch {
	rows := 0
	for _, r := range live {
		rows += r.batch.Rows
	}
	first := live[0].batch
	merged := &skl2go.Batch{Rows: rows, Columns: make([]skl2go.Column, len(first.Columns))}
	for i, col := range first.Columns {
		out := &merged.Columns[i]
		out.Name, out.Type = col.Name, col.Type
		out.Values.Grow(col.Type, rows)
		for _, r := range live {
			out.Values.Append(col.Type, &r.batch.Columns[i].Values)
		}
	}
	return merged
}

// split cuts each output into the requests' rows, in order. The parts share
// the merged output's memory (capped, so that appending to one cannot touch
// the next).
func split(outputs []skl2go.Output, live []*request) ([][]skl2go.Output, error) {
	parts := make([][]skl2go.Output, len(live))
	for i := range parts {
		parts[i] = make([]skl2go.Output, len(outputs))
	}
	for o, out := range outputs {
		total := 0
		for _, r := range live {
			total += r.batch.Rows
		}
		if len(out.Shape) == 0 || out.Shape[0] != int64(total) {
			return nil, fmt.Errorf("batching: output %s has shape %v for %d merged rows", out.Name, out.Shape, total)
		}
		width := 1
		for _, d := range out.Shape[1:] {
			width *= int(d)
		}
		start := 0
		for i, r := range live {
			end := start + r.batch.Rows*width
			shape := append([]int64{int64(r.batch.Rows)}, out.Shape[1:]...)
			parts[i][o] = skl2go.Output{Name: out.Name, Type: out.Type, Shape: shape, Values: out.Values.Slice(out.Type, start, end)}
			start = end
		}
	}
	return parts, nil
}

// ErrClosed reports whether err is the batcher's answer to requests it
// could not run because it was closing.
func ErrClosed(err error) bool { return errors.Is(err, errClosed) }
