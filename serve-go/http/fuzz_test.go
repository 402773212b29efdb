package http

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"skl2go"
)

// fuzzModel has an input of every type the server decodes, one with a range.
const fuzzModel = `{"name": "fuzz", "version": 1, "task": "regression",
 "inputs": [
  {"name": "zone", "type": "tensor(int64)", "shape": [-1, 1]},
  {"name": "distance", "type": "tensor(float)", "shape": [-1, 1], "range": [0, 1000]},
  {"name": "fare", "type": "tensor(double)", "shape": [-1, 1]},
  {"name": "count", "type": "tensor(int32)", "shape": [-1, 1]},
  {"name": "flag", "type": "tensor(string)", "shape": [-1, 1]},
  {"name": "paid", "type": "tensor(bool)", "shape": [-1, 1]}],
 "outputs": [{"name": "variable", "type": "tensor(float)", "shape": [-1, 1]}],
 "files": {"onnx": {"path": "model.onnx"}}}`

const fuzzRow = `{"zone": 74, "distance": 2.5, "fare": 12.5, "count": 1, "flag": "N", "paid": true}`

func fuzzMetadata(f *testing.F) *skl2go.Metadata {
	meta, err := skl2go.ParseMetadata([]byte(fuzzModel))
	if err != nil {
		f.Fatal(err)
	}
	return meta
}

// checkClientError fails the test unless err is a client error: an
// *skl2go.Error whose code maps to a 4xx status, with a message.
func checkClientError(t *testing.T, err error) {
	t.Helper()
	var e *skl2go.Error
	if !errors.As(err, &e) {
		t.Fatalf("%T %v is not a *skl2go.Error: it would answer 500", err, err)
	}
	if status := codes[e.Code]; status < 400 || status > 499 {
		t.Fatalf("code %q (status %d) for bad input, want a 4xx: %v", e.Code, status, err)
	}
	if e.Message == "" {
		t.Fatalf("code %q without a message", e.Code)
	}
}

// FuzzDecodeRequest feeds arbitrary bodies to the v1 predict decoder, under
// arbitrary body and row limits. Invariants: no panic; every error is a
// client error (4xx); a decoded batch has Rows values in every column, and
// at most the row limit. Seeds: testdata/fuzz/FuzzDecodeRequest and below.
// Run: go test ./http -run '^$' -fuzz FuzzDecodeRequest -fuzztime 60s
func FuzzDecodeRequest(f *testing.F) {
	meta := fuzzMetadata(f)
	for _, body := range []string{
		`{"instances": [` + fuzzRow + `]}`,
		`{"instances": [` + fuzzRow + `, ` + fuzzRow + `]}`,
		`{"instances": []}`, `{}`, `[]`, ``, `null`, `{"instances": [{}]}`,
		`{"instances": [{"zone": 1e400}]}`, `{"instances": [{"zone": 7.5}]}`, `{"instances": [{"distance": -1}]}`,
		`{"instances": [{"zone": "74"}]}`, `{"instances": [{"zone": 74, "zone": 75}]}`, `{"instances": [[1, 2]]}`,
		`{"instances": [` + fuzzRow + `]} trailing`, `{"instances": [` + fuzzRow[:30],
		"{\"instances\": [{\"flag\": \"\xff\xfe\"}]}", `{"instances": [{"paid": 1}]}`,
	} {
		f.Add([]byte(body), uint16(1024), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, limit uint16, maxRows uint8) {
		reader := http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(body)), int64(limit)+1)
		batch, err := DecodeRequest(reader, meta, int(maxRows)+1)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if batch.Rows < 1 || batch.Rows > int(maxRows)+1 || len(batch.Columns) != len(meta.Inputs) {
			t.Fatalf("batch of %d rows and %d columns (row limit %d)", batch.Rows, len(batch.Columns), int(maxRows)+1)
		}
		for _, col := range batch.Columns {
			n := len(col.Float32) + len(col.Float64) + len(col.Int64) + len(col.Int32) + len(col.String) + len(col.Bool)
			if n != batch.Rows {
				t.Fatalf("column %s has %d values for %d rows", col.Name, n, batch.Rows)
			}
		}
	})
}

// FuzzDecodeInferRequest does the same for the V2 infer decoder, JSON and
// binary tensor data (headerLen splits the body, as Inference-Header-Content-Length does).
func FuzzDecodeInferRequest(f *testing.F) {
	meta := fuzzMetadata(f)
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
		req, err := decodeInferRequest(body, split, meta, int(maxRows)+1)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if req.batch == nil || req.batch.Rows < 1 || req.batch.Rows > int(maxRows)+1 {
			t.Fatalf("decoded request without a batch of 1..%d rows: %+v", int(maxRows)+1, req.batch)
		}
	})
}
