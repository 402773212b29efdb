package skl2go

import (
	"context"
	"sync/atomic"
	"time"
)

// Limiter bounds the predictions a process runs at once. A prediction
// beyond the bound waits for a slot, within a bounded queue and for a
// bounded time; past either bound it fails at once with EOVERLOADED, so an
// overloaded server answers fast 503s instead of growing a queue that no
// client will wait for.
type Limiter struct {
	slots      chan struct{}
	waiting    atomic.Int64
	maxWaiting int64
	maxWait    time.Duration
}

// NewLimiter allows running predictions at once, and at most waiting more
// to wait up to maxWait each for a slot.
func NewLimiter(running, waiting int, maxWait time.Duration) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(running, 1)), maxWaiting: int64(max(waiting, 0)), maxWait: maxWait}
}

// Wrap returns m with every Predict taking one of l's slots. Several models
// wrapped by one Limiter share its slots.
func (l *Limiter) Wrap(m Model) Model { return &limited{Model: m, limiter: l} }

// acquire takes a slot, or says why it could not.
func (l *Limiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	if l.waiting.Add(1) > l.maxWaiting {
		l.waiting.Add(-1)
		return l.overloaded()
	}
	defer l.waiting.Add(-1)
	timer := time.NewTimer(l.maxWait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-timer.C:
		return l.overloaded()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Limiter) release() { <-l.slots }

// Load returns how many predictions run and how many wait for a slot.
func (l *Limiter) Load() (running, waiting int) {
	return len(l.slots), int(l.waiting.Load())
}

func (l *Limiter) overloaded() error {
	return Errorf(EOVERLOADED, "server overloaded: %d predictions running and %d waiting; retry shortly",
		cap(l.slots), l.maxWaiting)
}

// limited is a Model whose predictions go through a Limiter.
type limited struct {
	Model
	limiter *Limiter
}

// Predict implements Model.
func (m *limited) Predict(ctx context.Context, batch *Batch) ([]Output, error) {
	if err := m.limiter.acquire(ctx); err != nil {
		return nil, err
	}
	defer m.limiter.release()
	return m.Model.Predict(ctx, batch)
}

// Unwrap returns the model the Limiter wraps.
func (m *limited) Unwrap() Model { return m.Model }

// Innermost returns the model a chain of wrappers (a Limiter's, batching's:
// those with an Unwrap method) ends in. Background work, such as an
// experiment's mirror, runs it directly, so that it takes no request's slot
// and joins no request's batch.
func Innermost(m Model) Model {
	for {
		u, ok := m.(interface{ Unwrap() Model })
		if !ok {
			return m
		}
		m = u.Unwrap()
	}
}

// Executions implements ExecutionCounter with the wrapped model's count.
func (m *limited) Executions() uint64 {
	if c, ok := m.Model.(ExecutionCounter); ok {
		return c.Executions()
	}
	return 0
}
