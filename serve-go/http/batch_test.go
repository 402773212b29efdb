package http_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	"skl2go/batching"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

// With dynamic batching, concurrent requests get the answers they would
// alone, and the metrics show the merged runs: executions counted by the
// model, rows and requests per run, time queued.
func TestBatchedModelServesConcurrentRequestsAndReportsItsRuns(t *testing.T) {
	root := t.TempDir()
	fixture.CopyVersion(t, models, root, 1)
	entry, err := repository.Read(root, fixture.Model, 1)
	if err != nil {
		t.Fatal(err)
	}
	model, err := runtime.Load(entry.Dir, entry.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// The first run is held until the other requests queue behind it (one
	// runner): then they run 8 by 8.
	held := &heldFirst{Model: model, gate: make(chan struct{})}
	batched, err := batching.New(held, batching.Options{MaxRows: 8, Runners: 1}, skhttp.NewBatchMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	go func() { // once the first run holds the runner and every other request waits
		for held.firstRows.Load() == 0 || batched.Waiting() < 64-int(held.firstRows.Load()) {
			time.Sleep(time.Millisecond)
		}
		close(held.gate)
	}()
	store := repository.NewStore(batched)
	t.Cleanup(func() { store.Close() })
	s := skhttp.NewServer(store, skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 1000}, slog.New(slog.DiscardHandler), reg)
	h := s.Handler()

	instances, want := fixture.Examples(entry.Metadata)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(t, h, "POST", "/v1/models/trip_duration:predict", "", `{"instances": [`+string(instances[i%len(instances)])+`]}`)
			preds, _ := r.body["predictions"].([]any)
			if r.status != 200 || len(preds) != 1 || !skl2go.WithinTolerance(preds[0].(float64), want[i%len(want)]) {
				t.Errorf("request %d: %d %s", i, r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	metrics := do(t, h, "GET", "/metrics", "", "").raw
	rest := 64 - int(held.firstRows.Load()) // the first run took what had queued (≤ 8); the rest run 8 by 8
	runs := strconv.Itoa(1 + (rest+7)/8)
	for _, line := range []string{
		`skl2go_inference_exec_count_total{model="trip_duration",version="1"} ` + runs,
		`skl2go_inference_request_success_total{model="trip_duration",protocol="v1",version="1"} 64`,
		`skl2go_batch_rows_count{model="trip_duration",version="1"} ` + runs,
		`skl2go_batch_rows_sum{model="trip_duration",version="1"} 64`,
		`skl2go_batch_requests_sum{model="trip_duration",version="1"} 64`,
		`skl2go_batch_queue_duration_seconds_count{model="trip_duration",version="1"} 64`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
}

// heldFirst holds its model's first run until gate is closed, and records
// its rows.
type heldFirst struct {
	skl2go.Model
	gate      chan struct{}
	once      sync.Once
	firstRows atomic.Int64
}

func (h *heldFirst) Predict(ctx context.Context, b *skl2go.Batch) ([]skl2go.Output, error) {
	h.once.Do(func() {
		h.firstRows.Store(int64(b.Rows))
		<-h.gate
	})
	return h.Model.Predict(ctx, b)
}

func (h *heldFirst) Executions() uint64 { return h.Model.(skl2go.ExecutionCounter).Executions() }
