package events_test

import (
	"context"
	"fmt"
	"testing"

	"skl2go"
	"skl2go/batching"
	"skl2go/events"
	"skl2go/internal/fixture"
	"skl2go/onnx"
	"skl2go/repository"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

func scorer(t testing.TB) *events.Scorer {
	load := batching.Loader(func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) },
		skl2go.NewLimiter(2, 0, 0), batching.Options{MaxRows: 64}, nil)
	s, err := repository.Open(models, load, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &events.Scorer{Store: s, Model: fixture.Model}
}

func rideEvents(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"ride_id":"r-%d","PULocationID":%d,"DOLocationID":75,"trip_distance":2.5,"pickup_hour":8,"pickup_weekday":1}`, i, 1+i%265)
	}
	return out
}

// Results come back in the events' order; a bad event in the middle gets
// its error and does not disturb its neighbours' predictions.
func TestScoreKeepsOrderAndIsolatesBadEvents(t *testing.T) {
	s := scorer(t)
	evs := rideEvents(5)
	alone, err := s.Score(context.Background(), evs[3:4])
	if err != nil {
		t.Fatal(err)
	}
	evs[2] = []byte(`{"ride_id":"r-2","PULocationID":"x"}`)
	results, err := s.Score(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if (i == 2) != (r.Err != nil) {
			t.Fatalf("event %d: err %v", i, r.Err)
		}
		if i != 2 && r.Version != 1 {
			t.Errorf("event %d: version %d", i, r.Version)
		}
	}
	if string(results[3].Record) != string(alone[0].Record) {
		t.Errorf("event 3 in a batch %s, alone %s", results[3].Record, alone[0].Record)
	}
	if want := "event.PULocationID: expected an integer, got string \"x\""; skl2go.ErrorMessage(results[2].Err) != want {
		t.Errorf("error %q, want %q", skl2go.ErrorMessage(results[2].Err), want)
	}
}

func TestScoreRetriesUntilTheModelIsServed(t *testing.T) {
	s := scorer(t)
	s.Model = "not_served"
	ctx, cancel := context.WithTimeout(context.Background(), 300_000_000) // 300ms
	defer cancel()
	if _, err := s.Score(ctx, rideEvents(1)); err == nil {
		t.Fatal("scored with a model that is not served")
	}
}

func BenchmarkScore1000(b *testing.B) {
	s := scorer(b)
	evs := rideEvents(1000)
	for b.Loop() {
		if _, err := s.Score(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
}
