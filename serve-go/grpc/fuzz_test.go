package grpc_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	skgrpc "skl2go/grpc"
	"skl2go/grpc/inferencepb"
	"skl2go/internal/wiretest"
)

// FuzzModelInfer feeds arbitrary protobuf messages to the ModelInfer
// decoder, under arbitrary row limits. Invariants: no panic; every error
// is a client error; a decoded request has a batch within the row limit
// whose columns hold rows elements each, and its answer encodes.
// Run: go test ./grpc -run '^$' -fuzz FuzzModelInfer -fuzztime 60s
func FuzzModelInfer(f *testing.F) {
	meta := wiretest.Metadata(f)
	typed := &inferencepb.ModelInferRequest{ModelName: "fuzz", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "zone", Datatype: "INT64", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{Int64Contents: []int64{74}}},
		{Name: "distance", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{2.5}}},
		{Name: "fare", Datatype: "FP64", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{Fp64Contents: []float64{12.5}}},
		{Name: "count", Datatype: "INT32", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{IntContents: []int32{1}}},
		{Name: "flag", Datatype: "BYTES", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{BytesContents: [][]byte{[]byte("N")}}},
		{Name: "paid", Datatype: "BOOL", Shape: []int64{1, 1}, Contents: &inferencepb.InferTensorContents{BoolContents: []bool{true}}},
	}}
	raw := proto.Clone(typed).(*inferencepb.ModelInferRequest)
	raw.RawInputContents = [][]byte{{74, 0, 0, 0, 0, 0, 0, 0}, {0, 0, 0x20, 0x40}, {0, 0, 0, 0, 0, 0, 0x29, 0x40}, {1, 0, 0, 0}, {1, 0, 0, 0, 'N'}, {1}}
	for _, in := range raw.Inputs {
		in.Contents = nil
	}
	for _, m := range []*inferencepb.ModelInferRequest{typed, raw, {}, {Inputs: typed.Inputs[:2]}} {
		data, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxRows uint8) {
		if len(data) > 1<<16 {
			return // bounded: the server's message limit refuses larger ones before decoding
		}
		var req inferencepb.ModelInferRequest
		if proto.Unmarshal(data, &req) != nil {
			return // grpc answers INTERNAL for a message that does not parse, before any handler
		}
		limit := int(maxRows) + 1
		d, err := skgrpc.DecodeRequest(&req, meta, limit)
		if err != nil {
			wiretest.CheckClientError(t, err)
			return
		}
		if d.Batch == nil || d.Batch.Rows < 1 || d.Batch.Rows > limit {
			t.Fatalf("decoded request without a batch of 1..%d rows: %+v", limit, d.Batch)
		}
		for _, col := range d.Batch.Columns {
			n := len(col.Float32) + len(col.Float64) + len(col.Int64) + len(col.Int32) + len(col.String) + len(col.Bool)
			if n != d.Batch.Rows {
				t.Fatalf("column %s has %d elements for %d rows", col.Name, n, d.Batch.Rows)
			}
		}
	})
}
