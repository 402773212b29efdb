package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/tfserving"
)

// benchBody repeats the fixture's examples to make a body of n rows.
func benchBody(meta *skl2go.Metadata, n int) string {
	instances := make([]json.RawMessage, n)
	for i := range instances {
		instances[i] = meta.Examples[i%len(meta.Examples)].Instance
	}
	body, _ := json.Marshal(map[string]any{"instances": instances})
	return string(body)
}

// Each stage of a predict request, for 1 and 1,000 rows:
// go test ./http -run '^$' -bench . -benchmem
func BenchmarkPredictStages(b *testing.B) {
	s, meta, store := newServerWithStore(b, skhttp.Config{MaxBodyBytes: 32 << 20, MaxRows: 100000})
	model, release, err := store.Acquire(meta.Name, meta.Version)
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	for _, rows := range []int{1, 1000} {
		body := benchBody(meta, rows)
		req, err := tfserving.DecodeRequest([]byte(body), meta, rows)
		if err != nil {
			b.Fatal(err)
		}
		batch := req.Batch
		outputs, err := model.Predict(context.Background(), batch)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("decode/rows=%d", rows), func(b *testing.B) {
			data := []byte(body) // the server reads bodies into reused buffers
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := tfserving.DecodeRequest(data, meta, rows); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("ort_run/rows=%d", rows), func(b *testing.B) {
			for b.Loop() {
				if _, err := model.Predict(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("encode/rows=%d", rows), func(b *testing.B) {
			buf := make([]byte, 0, 64<<10)
			for b.Loop() {
				if _, err := tfserving.AppendPredictions(buf[:0], outputs, rows, meta.Name, meta.Version); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("handler/rows=%d", rows), func(b *testing.B) {
			h := s.Handler()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/models/trip_duration:predict", strings.NewReader(body))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
