package http_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	skhttp "skl2go/http"
	"skl2go/inferencelog"
)

// The predict handler with the inference log off and at 100% (the real
// file sink, its writer on its own goroutine), for 1 and 1,000 rows:
// go test ./http -run '^$' -bench InferenceLog -benchmem
func BenchmarkInferenceLog(b *testing.B) {
	for _, rows := range []int{1, 1000} {
		for _, rate := range []float64{0, 1} {
			b.Run(fmt.Sprintf("rows=%d/rate=%g", rows, rate), func(b *testing.B) {
				sink, err := inferencelog.Open(inferencelog.Options{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				s, meta := newServer(b, skhttp.Config{MaxBodyBytes: 32 << 20, MaxRows: 100000, InferenceLog: sink, InferenceLogRate: rate})
				body := benchBody(meta, rows)
				h := s.Handler()
				for b.Loop() {
					req := httptest.NewRequest("POST", "/v1/models/trip_duration:predict", strings.NewReader(body))
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
				b.StopTimer()
				sink.Close(context.Background())
				b.ReportMetric(float64(sink.Dropped()[inferencelog.DropQueueFull])/float64(b.N), "dropped/op")
			})
		}
	}
}
