package http_test

import (
	"log/slog"
	"strings"
	"sync"
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
	// The delay never expires: runs start when 8 requests of 1 row are queued.
	batched, err := batching.New(model, batching.Options{MaxRows: 8, MaxDelay: time.Hour}, skhttp.NewBatchMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
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
	for _, line := range []string{
		`skl2go_inference_exec_count_total{model="trip_duration",version="1"} 8`, // 64 requests, 8 runs
		`skl2go_inference_request_success_total{model="trip_duration",protocol="v1",version="1"} 64`,
		`skl2go_batch_rows_count{model="trip_duration",version="1"} 8`,
		`skl2go_batch_rows_sum{model="trip_duration",version="1"} 64`,
		`skl2go_batch_requests_sum{model="trip_duration",version="1"} 64`,
		`skl2go_batch_queue_duration_seconds_count{model="trip_duration",version="1"} 64`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
}
