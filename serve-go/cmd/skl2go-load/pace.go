package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pace says how a run sends: at rate requests per second (open loop: each
// request is due at its own time, whether or not the earlier ones were
// answered), or, with rate 0, each worker back to back (closed loop). Either
// way at most workers requests are in flight, and the run ends after
// duration or requests, whichever comes first, or when its context ends.
type pace struct {
	rate     float64
	workers  int
	duration time.Duration
	requests int64
}

// due is when request i (from 0) of a run started at start is due.
func (p pace) due(start time.Time, i int64) time.Time {
	if p.rate <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(i) * float64(time.Second) / p.rate))
}

// sender sends request i and says what came of it.
type sender func(i int64) outcome

// drive sends requests as p says until the run ends, adding each outcome to
// t; it returns how long the run took. Requests in flight when ctx ends are
// waited for (their own timeouts bound them), not counted as failures.
func drive(ctx context.Context, p pace, send sender, t *tally) time.Duration {
	start := time.Now()
	end := start.Add(p.duration)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			for {
				i := next.Add(1) - 1
				if i >= p.requests {
					return
				}
				due := p.due(start, i)
				if !due.Before(end) {
					return
				}
				if wait := time.Until(due); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				} else if ctx.Err() != nil || !time.Now().Before(end) {
					return
				}
				began := time.Now()
				if p.rate <= 0 {
					due = began
				}
				o := send(i)
				t.add(o, time.Since(due), began.Sub(due))
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
