package oip_test

import (
	"testing"

	"skl2go/internal/wiretest"
	"skl2go/oip"
)

// FuzzDecodeInferRequest feeds arbitrary bodies to the infer decoder, JSON
// and binary tensor data (headerLen splits the body, as the
// Inference-Header-Content-Length header does), under arbitrary row limits.
// Invariants: no panic; every error is a client error (4xx); a decoded
// request has a batch within the row limit.
// Run: go test ./oip -run '^$' -fuzz FuzzDecodeInferRequest -fuzztime 60s
func FuzzDecodeInferRequest(f *testing.F) {
	meta := wiretest.Metadata(f)
	input := func(name, datatype, data string) string {
		return `{"name": "` + name + `", "datatype": "` + datatype + `", "shape": [1, 1], "data": ` + data + `}`
	}
	valid := `{"inputs": [` + input("zone", "INT64", "[74]") + `, ` + input("distance", "FP32", "[2.5]") + `, ` +
		input("fare", "FP64", "[12.5]") + `, ` + input("count", "INT32", "[1]") + `, ` +
		input("flag", "BYTES", `["N"]`) + `, ` + input("paid", "BOOL", "[true]") + `]}`
	for _, body := range []string{valid, `{"inputs": []}`, `{}`, ``, `{"inputs": [{"name": "zone"}]}`,
		`{"inputs": 5}`, valid[:len(valid)/2], `{"id": 7, "inputs": []}`, `{"outputs": [{"name": "x"}], "inputs": []}`} {
		f.Add([]byte(body), int16(-1), uint8(3))
	}
	f.Add([]byte(`{"inputs": [{"name": "zone", "datatype": "INT64", "shape": [1, 1], "parameters": {"binary_data_size": 8}}]}`+"\x4a\x00\x00\x00\x00\x00\x00\x00"), int16(102), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, headerLen int16, maxRows uint8) {
		split := int(headerLen)
		if split < -1 || split > len(body) {
			split = -1
		}
		req, err := oip.DecodeRequest(body, split, meta, int(maxRows)+1)
		if err != nil {
			wiretest.CheckClientError(t, err)
			return
		}
		if req.Batch == nil || req.Batch.Rows < 1 || req.Batch.Rows > int(maxRows)+1 {
			t.Fatalf("decoded request without a batch of 1..%d rows: %+v", int(maxRows)+1, req.Batch)
		}
	})
}
