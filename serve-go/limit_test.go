package skl2go_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skl2go"
)

// gate is a model whose predictions block until released, counting how
// many run at once.
type gate struct {
	meta    skl2go.Metadata
	open    chan struct{}
	started chan struct{}
	running atomic.Int32
	most    atomic.Int32
}

func newGate(version int) *gate {
	return &gate{meta: skl2go.Metadata{Name: "m", Version: version}, open: make(chan struct{}), started: make(chan struct{}, 100)}
}

func (g *gate) Metadata() *skl2go.Metadata { return &g.meta }
func (g *gate) Close() error               { return nil }
func (g *gate) Predict(ctx context.Context, _ *skl2go.Batch) ([]skl2go.Output, error) {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	g.started <- struct{}{}
	<-g.open
	return nil, nil
}

func predictAsync(m skl2go.Model, ctx context.Context) chan error {
	done := make(chan error, 1)
	go func() { _, err := m.Predict(ctx, &skl2go.Batch{}); done <- err }()
	return done
}

func TestLimiterRunsAtMostNAndQueuesABoundedNumber(t *testing.T) {
	g := newGate(1)
	limiter := skl2go.NewLimiter(2, 1, time.Minute)
	m := limiter.Wrap(g)
	first, second := predictAsync(m, t.Context()), predictAsync(m, t.Context())
	<-g.started
	<-g.started
	queued := predictAsync(m, t.Context()) // waits for a slot
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, waiting := limiter.Load(); waiting == 1 {
			break
		}
	}
	if running, waiting := limiter.Load(); running != 2 || waiting != 1 {
		t.Fatalf("Load() = %d running, %d waiting; want 2, 1", running, waiting)
	}
	// The queue is full: one more is refused at once.
	_, err := m.Predict(t.Context(), &skl2go.Batch{})
	if skl2go.ErrorCode(err) != skl2go.EOVERLOADED || skl2go.ErrorMessage(err) != "server overloaded: 2 predictions running and 1 waiting; retry shortly" {
		t.Fatalf("a fourth prediction: err = %v, want EOVERLOADED", err)
	}
	close(g.open)
	for _, done := range []chan error{first, second, queued} {
		if err := <-done; err != nil {
			t.Errorf("a prediction within the bounds failed: %v", err)
		}
	}
	if most := g.most.Load(); most != 2 {
		t.Errorf("%d predictions ran at once, want at most 2", most)
	}
}

func TestLimiterGivesUpAfterTheQueueTimeoutOrTheRequest(t *testing.T) {
	g := newGate(1)
	m := skl2go.NewLimiter(1, 10, 20*time.Millisecond).Wrap(g)
	held := predictAsync(m, t.Context())
	<-g.started
	if _, err := m.Predict(t.Context(), &skl2go.Batch{}); skl2go.ErrorCode(err) != skl2go.EOVERLOADED {
		t.Errorf("waiting past the queue timeout: err = %v, want EOVERLOADED", err)
	}
	slow := skl2go.NewLimiter(1, 10, time.Hour).Wrap(g) // its own slot: the gate is shared, the limiter is not
	slowHeld := predictAsync(slow, t.Context())
	<-g.started
	ctx, cancel := context.WithCancel(t.Context())
	waiting := predictAsync(slow, ctx)
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Errorf("a request that went away while waiting: err = %v, want context.Canceled", err)
	}
	close(g.open)
	<-held
	<-slowHeld
}

func TestLimiterIsSharedByTheModelsItWraps(t *testing.T) {
	g := newGate(1)
	limiter := skl2go.NewLimiter(3, 1000, time.Minute)
	models := []skl2go.Model{limiter.Wrap(g), limiter.Wrap(g)} // two versions, one process
	const requests = 40
	var wg sync.WaitGroup
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := models[i%2].Predict(t.Context(), &skl2go.Batch{}); err != nil {
				t.Error(err)
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, waiting := limiter.Load(); waiting == requests-3 {
			break
		}
	}
	if running, waiting := limiter.Load(); running != 3 || waiting != requests-3 || g.running.Load() != 3 {
		t.Errorf("Load() = %d running, %d waiting, %d in the models; want 3, %d, 3", running, waiting, g.running.Load(), requests-3)
	}
	close(g.open)
	wg.Wait()
	if most := g.most.Load(); most != 3 {
		t.Errorf("%d predictions ran at once across both models, want 3", most)
	}
}

// TestInnermostReachesPastTheLimiter: a mirror's run (skl2go.Innermost)
// takes no slot, so it runs while every slot is held by a request.
func TestInnermostReachesPastTheLimiter(t *testing.T) {
	inner := newGate(1)
	wrapped := skl2go.NewLimiter(1, 0, time.Second).Wrap(inner)
	if got := skl2go.Innermost(wrapped); got != skl2go.Model(inner) {
		t.Fatalf("Innermost = %T, want the wrapped model", got)
	}
	if got := skl2go.Innermost(inner); got != skl2go.Model(inner) {
		t.Fatalf("Innermost of an unwrapped model = %T, want itself", got)
	}
	held := predictAsync(wrapped, context.Background()) // takes the one slot
	<-inner.started
	past := predictAsync(skl2go.Innermost(wrapped), context.Background())
	<-inner.started // it started although the slot is held
	if running := inner.running.Load(); running != 2 {
		t.Fatalf("%d predictions running, want 2", running)
	}
	close(inner.open)
	for _, done := range []chan error{held, past} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
