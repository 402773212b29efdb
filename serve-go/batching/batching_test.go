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

func TestConcurrentRequestsAreMergedIntoOneRunAndSplitBack(t *testing.T) {
	inner := &double{}
	obs := &recorder{}
	// The delay never expires: the batch runs when it holds MaxRows rows.
	b := newBatcher(t, inner, batching.Options{MaxRows: 64, MaxDelay: time.Hour}, obs)
	var requests [][]int64
	for i := range 32 {
		requests = append(requests, []int64{int64(2 * i), int64(2*i + 1)}) // 32 requests of 2 rows
	}
	predictAll(t, b, requests)
	if runs := inner.runRows(); len(runs) != 1 || runs[0] != 64 {
		t.Errorf("runs = %v, want one run of 64 rows", runs)
	}
	if got := obs.get(); len(got) != 1 || got[0].requests != 32 || got[0].rows != 64 || got[0].waits != 32 {
		t.Errorf("observed %+v", got)
	}
	if b.Executions() != 1 {
		t.Errorf("Executions = %d, want the inner model's 1", b.Executions())
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
	b := newBatcher(t, inner, batching.Options{MaxRows: 4, MaxDelay: time.Hour}, nil)
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
	inner := &double{}
	b, err := batching.New(inner, batching.Options{MaxRows: 100, MaxDelay: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() { _, err := b.Predict(context.Background(), batchOf(1)); queued <- err }()
	time.Sleep(20 * time.Millisecond) // most likely queued by now; closed first, it gets the same answer
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-queued; skl2go.ErrorCode(err) != skl2go.EUNAVAILABLE || !batching.ErrClosed(err) {
		t.Errorf("queued request: err = %v, want unavailable", err)
	}
	if _, err := b.Predict(context.Background(), batchOf(2)); !batching.ErrClosed(err) {
		t.Errorf("after Close: err = %v", err)
	}
	if inner.closed != 1 || len(inner.runRows()) != 0 {
		t.Errorf("inner closed %d times, ran %v", inner.closed, inner.runRows())
	}
}

func TestPastMaxQueueRequestsAreRefusedAtOnce(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	b := newBatcher(t, inner, batching.Options{MaxRows: 2, Runners: 1, MaxQueue: 3}, nil)
	answers := make(chan error, 4)
	for i := range 4 { // the first runs (held at the gate), three wait
		go func() { _, err := b.Predict(context.Background(), batchOf(int64(i))); answers <- err }()
		for want := max(i, 0); len(inner.runRows()) == 0 || b.Waiting() < want; {
			time.Sleep(time.Millisecond)
		}
	}
	_, err := b.Predict(context.Background(), batchOf(9))
	if skl2go.ErrorCode(err) != skl2go.EOVERLOADED || !strings.Contains(skl2go.ErrorMessage(err), "server overloaded") {
		t.Errorf("past MaxQueue: err = %v, want overloaded", err)
	}
	close(inner.gate)
	for range 4 {
		if err := <-answers; err != nil {
			t.Errorf("a request within the bounds: %v", err)
		}
	}
}

func TestPastMaxWaitARequestIsRefusedAndNeverRuns(t *testing.T) {
	inner := &double{gate: make(chan struct{})}
	b := newBatcher(t, inner, batching.Options{MaxRows: 8, Runners: 1, MaxWait: 20 * time.Millisecond}, nil)
	first := make(chan error, 1)
	go func() { _, err := b.Predict(context.Background(), batchOf(1)); first <- err }()
	for len(inner.runRows()) == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err := b.Predict(context.Background(), batchOf(2)) // waits behind the held run
	if skl2go.ErrorCode(err) != skl2go.EOVERLOADED {
		t.Errorf("past MaxWait: err = %v, want overloaded", err)
	}
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

func decode(t *testing.T, meta *skl2go.Metadata, instance json.RawMessage) *skl2go.Batch {
	dec := json.NewDecoder(bytes.NewReader(append(append([]byte("["), instance...), ']')))
	dec.UseNumber()
	batch, err := meta.DecodeInstances(dec, 1)
	if err != nil {
		t.Fatal(err)
	}
	return batch
}

type observed struct{ requests, rows, waits int }

type recorder struct {
	mu  sync.Mutex
	got []observed
}

func (r *recorder) ObserveBatch(_ *skl2go.Metadata, requests, rows int, waits []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, observed{requests, rows, len(waits)})
}

func (r *recorder) get() []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observed(nil), r.got...)
}
