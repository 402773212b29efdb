package http_test

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"strconv"
	"testing"

	skhttp "skl2go/http"
)

// A V2 infer request through the handler, JSON and binary tensor data, for
// 1 and 1,000 rows: go test ./http -run '^$' -bench Infer -benchmem
func BenchmarkInferHandler(b *testing.B) {
	s, meta := newServer(b, skhttp.Config{MaxBodyBytes: 32 << 20, MaxRows: 100000})
	h := s.Handler()
	for _, rows := range []int{1, 1000} {
		cols, _ := v2Columns(meta)
		for name, values := range cols {
			col := make([]float64, rows)
			for i := range col {
				col[i] = values[i%len(values)]
			}
			cols[name] = col
		}
		jsonBody := mustJSON(map[string]any{"inputs": v2JSONInputs(meta, cols, false)})
		binBody, headerLen := v2BinaryBody(b, meta, cols, map[string]any{"parameters": map[string]any{"binary_data_output": true}})
		for _, tt := range []struct {
			name    string
			body    []byte
			headers map[string]string
		}{
			{"json", jsonBody, nil},
			{"binary", binBody, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(headerLen)}},
		} {
			b.Run(fmt.Sprintf("%s/rows=%d", tt.name, rows), func(b *testing.B) {
				b.SetBytes(int64(len(tt.body)))
				for b.Loop() {
					req := httptest.NewRequest("POST", "/v2/models/trip_duration/infer", bytes.NewReader(tt.body))
					for k, v := range tt.headers {
						req.Header.Set(k, v)
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		}
	}
}
