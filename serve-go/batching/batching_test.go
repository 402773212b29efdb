package batching_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skl2go"
	"skl2go/batching"
	"skl2go/internal/fixture"
	"skl2go/onnx"
	"skl2go/repository"
	"skl2go/tfserving"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

var meta = &skl2go.Metadata{Name: "double", Version: 1,
	Inputs:  []skl2go.TensorSpec{{Name: "x", Type: skl2go.Int64, Shape: []int64{-1, 1}}},
	Outputs: []skl2go.TensorSpec{{Name: "y", Type: skl2go.Float32, Shape: []int64{-1, 2}}}}

// double is a model answering [2x, -x] per row. Each run can be held at a
// gate, and every run's row count is recorded.
type double struct {
	gate   chan struct{} // nil: runs go straight through
	mu     sync.Mutex
	runs   []int
	closed int
	err    error
}

func (d *double) Metadata() *skl2go.Metadata { return meta }
func (d *double) Close() error               { d.mu.Lock(); d.closed++; d.mu.Unlock(); return nil }
func (d *double) Executions() uint64         { d.mu.Lock(); defer d.mu.Unlock(); return uint64(len(d.runs)) }

func (d *double) Predict(ctx context.Context, b *skl2go.Batch) ([]skl2go.Output, error) {
	d.mu.Lock()
	d.runs = append(d.runs, b.Rows)
	d.mu.Unlock()
	if d.gate != nil {
		<-d.gate
	}
	if d.err != nil {
		return nil, d.err
	}
	out := skl2go.Output{Name: "y", Type: skl2go.Float32, Shape: []int64{int64(b.Rows), 2}}
	for _, x := range b.Columns[0].Int64 {
		out.Float32 = append(out.Float32, float32(2*x), float32(-x))
	}
	return []skl2go.Output{out}, nil
}

func (d *double) runRows() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int(nil), d.runs...)
}

func batchOf(xs ...int64) *skl2go.Batch {
	return &skl2go.Batch{Rows: len(xs), Columns: []skl2go.Column{{Name: "x", Type: skl2go.Int64, Values: skl2go.Values{Int64: xs}}}}
}

// checkAnswer verifies outputs are [2x, -x] for exactly the rows sent.
func checkAnswer(outputs []skl2go.Output, xs []int64) error {
	if len(outputs) != 1 || len(outputs[0].Shape) != 2 || outputs[0].Shape[0] != int64(len(xs)) || outputs[0].Shape[1] != 2 {
		return fmt.Errorf("outputs %+v for %d rows", outputs, len(xs))
	}
	got := outputs[0].Float32
	if len(got) != 2*len(xs) {
		return fmt.Errorf("%d values for %d rows", len(got), len(xs))
	}
	for i, x := range xs {
		if got[2*i] != float32(2*x) || got[2*i+1] != float32(-x) {
			return fmt.Errorf("row %d: got %v, want [%d %d]", i, got[2*i:2*i+2], 2*x, -x)
		}
	}
	return nil
}

func newBatcher(t *testing.T, inner skl2go.Model, opts batching.Options, obs batching.Observer) *batching.Model {
	t.Helper()
	b, err := batching.New(inner, opts, obs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// predictAll sends each request from its own goroutine and checks every answer.
func predictAll(t *testing.T, b skl2go.Model, requests [][]int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(requests))
	for _, xs := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outputs, err := b.Predict(context.Background(), batchOf(xs...))
			if err == nil {
				err = checkAnswer(outputs, xs)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// holdFirstRun starts one request whose run is held at inner's gate, then
// n more that queue behind it (the only runner is busy), and returns the
// channels their answers arrive on.
func holdFirstRun(t *testing.T, b *batching.Model, inner *double, requests [][]int64) (first chan error, rest chan error) {
	t.Helper()
	first, rest = make(chan error, 1), make(chan error, len(requests))
	go func() {
		out, err := b.Predict(context.Background(), batchOf(-1))
		if err == nil {
			err = checkAnswer(out, []int64{-1})
		}
		first <- err
	}()
	for len(inner.runRows()) == 0 {
		time.Sleep(time.Millisecond)
	}
	for _, xs := range requests {
		go func() {
			out, err := b.Predict(context.Background(), batchOf(xs...))
			if err == nil {
				err = checkAnswer(out, xs)
			}
			rest <- err
		}()
	}
	for b.Waiting() < len(requests) {
		time.Sleep(time.Millisecond)
	}
	return first, rest
}

func TestQueuedRequestsAreMergedIntoOneRunAndSplitBack(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	obs := &recorder{}
	b := newBatcher(t, inner, batching.Options{MaxRows: 64, Runners: 1}, obs)
	var requests [][]int64
	for i := range 32 {
		requests = append(requests, []int64{int64(2 * i), int64(2*i + 1)}) // 32 requests of 2 rows
	}
	first, rest := holdFirstRun(t, b, inner, requests)
	close(inner.gate)
	if err := <-first; err != nil {
		t.Error(err)
	}
	for range requests {
		if err := <-rest; err != nil {
			t.Error(err)
		}
	}
	if runs := inner.runRows(); len(runs) != 2 || runs[1] != 64 {
		t.Errorf("runs = %v, want the held one, then one run of 64 rows", runs)
	}
	if got := obs.get(); len(got) != 2 || got[1].requests != 32 || got[1].rows != 64 || got[1].waits != 32 {
		t.Errorf("observed %+v", got)
	}
	if b.Executions() != 2 {
		t.Errorf("Executions = %d, want the inner model's 2", b.Executions())
	}
	if b.LeadersForTest() != 0 || b.Waiting() != 0 {
		t.Errorf("after every answer: %d runs, %d waiting", b.LeadersForTest(), b.Waiting())
	}
}

func TestARunWaitsForMoreOnlyWhenRequestsComeClose(t *testing.T) {
	inner := &double{}
	obs := &recorder{}
	b := newBatcher(t, inner, batching.Options{MaxRows: 64, MaxDelay: 10 * time.Millisecond}, obs)
	// One after the other, each after the previous answer and a pause
	// longer than the delay: nobody to wait for, so no run waits.
	for i := range 5 {
		time.Sleep(20 * time.Millisecond)
		predictAll(t, b, [][]int64{{int64(i)}})
	}
	for _, o := range obs.get() {
		if o.maxWait >= 10*time.Millisecond {
			t.Errorf("a lone request waited %s for others", o.maxWait)
		}
	}
	// 32 at once: after the first, each comes right after another, so the
	// runs wait for more and merge.
	var requests [][]int64
	for i := range 32 {
		requests = append(requests, []int64{int64(i)})
	}
	before := len(inner.runRows())
	predictAll(t, b, requests)
	if runs := len(inner.runRows()) - before; runs >= 32 {
		t.Errorf("32 requests at once made %d runs: none merged", runs)
	}
}

func TestManyRequestsOfMixedSizesAllGetTheirRows(t *testing.T) {
	inner := &double{}
	b := newBatcher(t, inner, batching.Options{MaxRows: 16, MaxDelay: 200 * time.Microsecond, Runners: 2}, nil)
	var requests [][]int64
	next := int64(0)
	for i := range 400 {
		var xs []int64
		for range 1 + i%23 { // 1 … 23 rows: some over MaxRows, run alone
			xs = append(xs, next)
			next++
		}
		requests = append(requests, xs)
	}
	predictAll(t, b, requests)
	if l := b.LeadersForTest(); l != 0 {
		t.Fatalf("leaders = %d after every answer, queue %v", l, b.QueueForTest())
	}
	total, big, bigRequests := 0, 0, 0
	for _, rows := range inner.runRows() {
		total += rows
		if rows > 16 {
			big++
		}
	}
	for _, xs := range requests {
		if len(xs) > 16 {
			bigRequests++
		}
	}
	if total != int(next) {
		t.Errorf("the runs took %d rows, the requests sent %d", total, next)
	}
	if big != bigRequests { // merged runs never pass MaxRows; bigger requests run alone
		t.Errorf("%d runs of more than 16 rows, want %d (one per request that big)", big, bigRequests)
	}
}

func TestARequestLeavingDoesNotCancelTheOthers(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	b := newBatcher(t, inner, batching.Options{MaxRows: 8, Runners: 1}, nil)
	first := make(chan error, 1)
	go func() {
		out, err := b.Predict(context.Background(), batchOf(1))
		if err == nil {
			err = checkAnswer(out, []int64{1})
		}
		first <- err
	}()
	for len(inner.runRows()) == 0 { // the first run holds the only runner
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() { _, err := b.Predict(ctx, batchOf(2)); left <- err }()
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: err = %v", err)
	}
	close(inner.gate)
	if err := <-first; err != nil {
		t.Error(err)
	}
	predictAll(t, b, [][]int64{{3}, {4, 5}}) // and the batcher still serves
	for _, rows := range inner.runRows() {
		if rows == 0 {
			t.Error("ran an empty batch")
		}
	}
	if got := inner.runRows(); len(got) > 0 && got[0] != 1 {
		t.Errorf("first run had %d rows", got[0])
	}
}

func TestAnErrorReachesEveryRequestOfTheRun(t *testing.T) {
	inner := &double{err: errors.New("runtime failure")}
	b := newBatcher(t, inner, batching.Options{MaxRows: 4, MaxDelay: time.Millisecond}, nil)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Predict(context.Background(), batchOf(int64(i))); err != nil && err.Error() == "runtime failure" {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 4 {
		t.Errorf("%d of 4 requests got the run's error", failed.Load())
	}
}

func TestCloseAnswersQueuedRequestsAndClosesTheModelOnce(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	b, err := batching.New(inner, batching.Options{MaxRows: 8, Runners: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, rest := holdFirstRun(t, b, inner, [][]int64{{1}, {2}})
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	for range 2 { // answered at once, while the held run goes on
		if err := <-rest; skl2go.ErrorCode(err) != skl2go.EUNAVAILABLE || !batching.ErrClosed(err) {
			t.Errorf("queued request: err = %v, want unavailable", err)
		}
	}
	select {
	case <-closed:
		t.Fatal("Close returned before the run in progress finished")
	default:
	}
	close(inner.gate)
	if err := <-first; err != nil {
		t.Errorf("the run in progress: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Predict(context.Background(), batchOf(3)); !batching.ErrClosed(err) {
		t.Errorf("after Close: err = %v", err)
	}
	if inner.closed != 1 || len(inner.runRows()) != 1 {
		t.Errorf("inner closed %d times, ran %v", inner.closed, inner.runRows())
	}
}

func TestPastMaxQueueRequestsAreRefusedAtOnce(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	b := newBatcher(t, inner, batching.Options{MaxRows: 2, Runners: 1, MaxQueue: 3}, nil)
	first, rest := holdFirstRun(t, b, inner, [][]int64{{1}, {2}, {3}})
	_, err := b.Predict(context.Background(), batchOf(9))
	if skl2go.ErrorCode(err) != skl2go.EOVERLOADED || !strings.Contains(skl2go.ErrorMessage(err), "server overloaded") {
		t.Errorf("past MaxQueue: err = %v, want overloaded", err)
	}
	close(inner.gate)
	if err := <-first; err != nil {
		t.Error(err)
	}
	for range 3 {
		if err := <-rest; err != nil {
			t.Errorf("a request within the bounds: %v", err)
		}
	}
}

func TestPastMaxWaitARequestIsRefusedAndNeverRuns(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	rec := &recorder{}
	b := newBatcher(t, inner, batching.Options{MaxRows: 8, Runners: 1, MaxWait: 20 * time.Millisecond}, rec)
	first := make(chan error, 1)
	go func() { _, err := b.Predict(context.Background(), batchOf(1)); first <- err }()
	for len(inner.runRows()) == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err := b.Predict(context.Background(), batchOf(2)) // waits behind the held run
	if skl2go.ErrorCode(err) != skl2go.EOVERLOADED {
		t.Errorf("past MaxWait: err = %v, want overloaded", err)
	}
	rec.mu.Lock()
	if rec.shed[batching.ShedTimeout] != 1 {
		t.Errorf("shed = %v, want the one that gave up counted as %q", rec.shed, batching.ShedTimeout)
	}
	rec.mu.Unlock()
	close(inner.gate)
	if err := <-first; err != nil {
		t.Error(err)
	}
	predictAll(t, b, [][]int64{{3}})
	if runs := inner.runRows(); len(runs) != 2 || runs[0] != 1 || runs[1] != 1 {
		t.Errorf("runs = %v: the refused request must not run", runs)
	}
	if b.Waiting() != 0 {
		t.Errorf("Waiting = %d after every answer", b.Waiting())
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, opts := range []batching.Options{{MaxRows: 0}, {MaxRows: 4, MaxDelay: -time.Second}} {
		if _, err := batching.New(&double{}, opts, nil); err == nil {
			t.Errorf("accepted %+v", opts)
		}
	}
}

// The real model, batched, answers as unbatched, row for row. Not bit for
// bit: ONNX Runtime sums in a different order for different batch sizes, so
// the last float32 bit may differ, exactly as when a client sends the rows
// in one request.
func TestBatchedONNXModelAnswersLikeTheModel(t *testing.T) {
	entry, err := repository.Read(models, fixture.Model, 1)
	if err != nil {
		t.Fatal(err)
	}
	model, err := runtime.Load(entry.Dir, entry.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	b := newBatcher(t, model, batching.Options{MaxRows: 32, MaxDelay: 100 * time.Microsecond}, nil)
	instances, _ := fixture.Examples(model.Metadata())
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			one := decode(t, model.Metadata(), instances[i%len(instances)])
			want, err := model.Predict(context.Background(), one)
			if err != nil {
				t.Error(err)
				return
			}
			got, err := b.Predict(context.Background(), one)
			if err != nil || len(got) != 1 || got[0].Shape[0] != 1 || len(got[0].Float32) != 1 ||
				math.Abs(float64(got[0].Float32[0]-want[0].Float32[0])) > 1e-6*math.Max(1, math.Abs(float64(want[0].Float32[0]))) {
				t.Errorf("instance %d: batched %+v (%v), alone %+v", i, got, err, want)
			}
		}()
	}
	wg.Wait()
}

func decode(t testing.TB, meta *skl2go.Metadata, instance json.RawMessage) *skl2go.Batch {
	dec := json.NewDecoder(bytes.NewReader(append(append([]byte("["), instance...), ']')))
	dec.UseNumber()
	batch, err := tfserving.DecodeInstances(dec, meta, 1)
	if err != nil {
		t.Fatal(err)
	}
	return batch
}

type observed struct {
	requests, rows, waits int
	maxWait               time.Duration
}

type recorder struct {
	mu    sync.Mutex
	got   []observed
	shed  map[string]int // requests refused, by reason
	waits []time.Duration
}

func (r *recorder) ObserveAdmission(_ *skl2go.Metadata, wait time.Duration, shed string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if shed != "" {
		if r.shed == nil {
			r.shed = map[string]int{}
		}
		r.shed[shed]++
	}
	r.waits = append(r.waits, wait)
}

func (r *recorder) ObserveGiveUp(*skl2go.Metadata) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shed == nil {
		r.shed = map[string]int{}
	}
	r.shed[batching.ShedTimeout]++
}

func (r *recorder) ObserveBatch(_ *skl2go.Metadata, requests, rows int, waits []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := observed{requests: requests, rows: rows, waits: len(waits)}
	for _, w := range waits {
		o.maxWait = max(o.maxWait, w)
	}
	r.got = append(r.got, o)
}

func (r *recorder) get() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observed(nil), r.got...)
}

// clock is a fake clock that only the fake model moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// timed is a model whose every run lasts cost on the fake clock; while
// held, a run waits for release (after saying so on entered).
type timed struct {
	double
	clock   *clock
	cost    time.Duration
	held    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (m *timed) Predict(ctx context.Context, b *skl2go.Batch) ([]skl2go.Output, error) {
	if m.held.Load() {
		m.entered <- struct{}{}
		<-m.release
	}
	m.clock.advance(m.cost)
	return m.double.Predict(ctx, b)
}

// Shedding is bounded by the estimated wait, not by a request count: with a
// run in progress, n single-row requests arrive at once; each is refused
// only if the runs queued ahead of it and its own (MaxRows 64 each, one at a
// time) times the recent run time exceed MaxWait, or MaxQueue already wait.
func TestSheddingIsBoundedByTheEstimatedWait(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cost      time.Duration // one run on the fake clock
		warm      bool          // a run has been timed before the burst
		n         int
		maxQueue  int
		wantShed  map[string]int
		wantQueue int
	}{
		{name: "300 single rows in 5 runs of 1s fit a 10s deadline", cost: time.Second, warm: true, n: 300, maxQueue: 100_000,
			wantQueue: 300},
		{name: "600 single rows in 10 runs of 1s fit a 10s deadline", cost: time.Second, warm: true, n: 600, maxQueue: 100_000,
			wantQueue: 600},
		{name: "runs of 5s: only 2 runs (128 rows) fit", cost: 5 * time.Second, warm: true, n: 300, maxQueue: 100_000,
			wantShed: map[string]int{batching.ShedDeadline: 172}, wantQueue: 128},
		{name: "runs longer than the deadline: nobody queues", cost: 11 * time.Second, warm: true, n: 50, maxQueue: 100_000,
			wantShed: map[string]int{batching.ShedDeadline: 50}},
		{name: "the safety cap holds however fast the runs", cost: time.Millisecond, warm: true, n: 700, maxQueue: 500,
			wantShed: map[string]int{batching.ShedQueueFull: 200}, wantQueue: 500},
		{name: "no run timed yet: no estimate, only the cap", cost: time.Hour, n: 300, maxQueue: 100_000,
			wantQueue: 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{now: time.Unix(1_000_000, 0)}
			inner := &timed{clock: c, cost: tc.cost, entered: make(chan struct{}), release: make(chan struct{})}
			obs := &recorder{}
			b := newBatcher(t, inner, batching.Options{MaxRows: 64, Runners: 1, MaxWait: 10 * time.Second,
				MaxQueue: tc.maxQueue, Now: c.Now}, obs)
			if tc.warm {
				if _, err := b.Predict(context.Background(), batchOf(1)); err != nil {
					t.Fatal(err)
				}
				if b.RunTime() != tc.cost {
					t.Fatalf("RunTime after one run = %s, want %s", b.RunTime(), tc.cost)
				}
			}
			inner.held.Store(true)
			first := make(chan error, 1)
			go func() { _, err := b.Predict(context.Background(), batchOf(0)); first <- err }()
			<-inner.entered
			inner.held.Store(false)

			var wg sync.WaitGroup
			var shed atomic.Int64
			errs := make(chan error, tc.n)
			for i := range tc.n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					outputs, err := b.Predict(context.Background(), batchOf(int64(i)))
					switch {
					case skl2go.ErrorCode(err) == skl2go.EOVERLOADED:
						shed.Add(1)
					case err != nil:
						errs <- err
					default:
						if err := checkAnswer(outputs, []int64{int64(i)}); err != nil {
							errs <- err
						}
					}
				}()
			}
			for deadline := time.Now().Add(30 * time.Second); b.Waiting()+int(shed.Load()) < tc.n; {
				if time.Now().After(deadline) {
					t.Fatalf("%d waiting and %d shed of %d", b.Waiting(), shed.Load(), tc.n)
				}
				time.Sleep(time.Millisecond)
			}
			if b.Waiting() != tc.wantQueue {
				t.Errorf("%d requests queued, want %d", b.Waiting(), tc.wantQueue)
			}
			close(inner.release)
			wg.Wait()
			if err := <-first; err != nil {
				t.Errorf("the run in progress: %v", err)
			}
			close(errs)
			for err := range errs {
				t.Errorf("an admitted request: %v", err)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if fmt.Sprint(obs.shed) != fmt.Sprint(tc.wantShed) {
				t.Errorf("shed %v, want %v", obs.shed, tc.wantShed)
			}
			if int(shed.Load()) != tc.n-tc.wantQueue {
				t.Errorf("%d requests answered overloaded, want %d", shed.Load(), tc.n-tc.wantQueue)
			}
			if len(obs.waits) != tc.n {
				t.Errorf("%d admissions observed, want %d", len(obs.waits), tc.n)
			}
		})
	}
}

// Single-row predictions from 32 goroutines, straight to ONNX Runtime or
// through the batcher (ns/op is per prediction; rows/run is the mean merged
// batch): go test ./batching -run '^$' -bench . -benchmem
func BenchmarkConcurrentSingleRows(b *testing.B) {
	entry, err := repository.Read(models, fixture.Model, 1)
	if err != nil {
		b.Fatal(err)
	}
	model, err := runtime.Load(entry.Dir, entry.Metadata)
	if err != nil {
		b.Fatal(err)
	}
	defer model.Close()
	instances, _ := fixture.Examples(model.Metadata())
	one := decode(b, model.Metadata(), instances[0])
	for _, delay := range []time.Duration{-1, 0, 50 * time.Microsecond, 100 * time.Microsecond} {
		name := "unbatched"
		var target skl2go.Model = model
		if delay >= 0 {
			name = fmt.Sprintf("batched/delay=%s", delay)
			batched, err := batching.New(noClose{model}, batching.Options{MaxRows: 64, MaxDelay: delay}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer batched.Close()
			target = batched
		}
		b.Run(name, func(b *testing.B) {
			runs := model.Executions()
			b.SetParallelism(16) // × GOMAXPROCS goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := target.Predict(context.Background(), one); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/float64(model.Executions()-runs), "rows/run")
		})
	}
}

// noClose lets several batchers share one model in a benchmark.
type noClose struct{ skl2go.Model }

func (noClose) Close() error { return nil }
