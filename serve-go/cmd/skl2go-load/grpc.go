package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	ggrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"skl2go/grpc/inferencepb"
)

// grpcTarget sends ModelInfer calls made from v1 predict bodies over a few
// connections, round robin.
type grpcTarget struct {
	clients  []inferencepb.GRPCInferenceServiceClient
	conns    []*ggrpc.ClientConn
	requests []*inferencepb.ModelInferRequest
	rows     []int
	model    string
	versions map[string]bool
	retries  int
	timeout  time.Duration
}

// newGRPCTarget connects, asks the model's metadata (its inputs' datatypes)
// and makes one ModelInferRequest per body.
func newGRPCTarget(addr, model string, bodies []body, versions map[string]bool, conns, retries int,
	raw bool, timeout time.Duration) (*grpcTarget, error) {
	t := &grpcTarget{model: model, versions: versions, retries: retries, timeout: timeout}
	for range conns {
		conn, err := ggrpc.NewClient(addr, ggrpc.WithTransportCredentials(insecure.NewCredentials()),
			ggrpc.WithDefaultCallOptions(ggrpc.MaxCallRecvMsgSize(64<<20), ggrpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			t.close()
			return nil, err
		}
		t.conns = append(t.conns, conn)
		t.clients = append(t.clients, inferencepb.NewGRPCInferenceServiceClient(conn))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	meta, err := t.clients[0].ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: model})
	cancel()
	if err != nil {
		t.close()
		return nil, fmt.Errorf("model metadata: %w", err)
	}
	for n, b := range bodies {
		var doc struct {
			Instances []map[string]any `json:"instances"`
		}
		if err := json.Unmarshal(b.data, &doc); err != nil {
			t.close()
			return nil, fmt.Errorf("body %d: %w", n+1, err)
		}
		req, err := inferRequest(meta, doc.Instances, raw)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("body %d: %w", n+1, err)
		}
		t.requests, t.rows = append(t.requests, req), append(t.rows, b.rows)
	}
	return t, nil
}

func (t *grpcTarget) close() {
	for _, c := range t.conns {
		c.Close()
	}
}

// send makes call i (round robin over bodies and connections). A call
// answered UNAVAILABLE is sent again, up to retries times, as a gRPC
// client's retry policy would.
func (t *grpcTarget) send(i int64) outcome {
	n := int(i % int64(len(t.requests)))
	client := t.clients[int(i%int64(len(t.clients)))]
	var (
		resp *inferencepb.ModelInferResponse
		err  error
		o    outcome
	)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		resp, err = client.ModelInfer(ctx, t.requests[n])
		cancel()
		if status.Code(err) != codes.Unavailable || attempt == t.retries {
			break
		}
		o.retries++
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	if err != nil {
		o.kind, o.detail = "grpc "+status.Code(err).String(), err.Error()
		return o
	}
	c := checkInfer(resp, t.rows[n], t.model, t.versions)
	c.retries = o.retries
	return c
}

// checkInfer checks a ModelInfer answer for rows instances: it names the
// model and a version among versions (nil: any), and its first output
// holds one finite value per instance (per column of it, for a 2-D one).
func checkInfer(resp *inferencepb.ModelInferResponse, rows int, model string, versions map[string]bool) outcome {
	if resp.GetModelName() != model {
		return outcome{kind: "answer", detail: fmt.Sprintf("model_name is %q, not %q", resp.GetModelName(), model)}
	}
	if v, err := strconv.Atoi(resp.GetModelVersion()); err != nil || v < 1 {
		return outcome{kind: "answer", detail: fmt.Sprintf("model_version %q is not a positive integer", resp.GetModelVersion())}
	}
	if !allowed(versions, resp.GetModelVersion()) {
		return outcome{kind: "version", detail: fmt.Sprintf("version %s, not one of %v", resp.GetModelVersion(), sortedKeys(versions))}
	}
	if len(resp.GetOutputs()) == 0 {
		return outcome{kind: "answer", detail: "no outputs"}
	}
	out := resp.GetOutputs()[0]
	shape := out.GetShape()
	if len(shape) == 0 || shape[0] != int64(rows) {
		return outcome{kind: "answer", detail: fmt.Sprintf("output %s has shape %v for %d instances", out.GetName(), shape, rows)}
	}
	elements := 1
	for _, d := range shape {
		elements *= int(d)
	}
	var values []float64
	switch raw := resp.GetRawOutputContents(); {
	case len(raw) > 0 && out.GetDatatype() == "FP32":
		for j := 0; j+4 <= len(raw[0]); j += 4 {
			values = append(values, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[0][j:]))))
		}
	case len(raw) > 0 && out.GetDatatype() == "FP64":
		for j := 0; j+8 <= len(raw[0]); j += 8 {
			values = append(values, math.Float64frombits(binary.LittleEndian.Uint64(raw[0][j:])))
		}
	case len(raw) > 0:
		return outcome{version: resp.GetModelVersion()} // labels and the like: the shape is what is checked
	case out.GetDatatype() == "FP32":
		for _, f := range out.GetContents().GetFp32Contents() {
			values = append(values, float64(f))
		}
	case out.GetDatatype() == "FP64":
		values = out.GetContents().GetFp64Contents()
	default:
		return outcome{version: resp.GetModelVersion()}
	}
	if len(values) != elements {
		return outcome{kind: "answer", detail: fmt.Sprintf("output %s has %d values for shape %v", out.GetName(), len(values), shape)}
	}
	for _, f := range values {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return outcome{kind: "answer", detail: fmt.Sprintf("output %s holds %v", out.GetName(), f)}
		}
	}
	return outcome{version: resp.GetModelVersion()}
}

func inferRequest(meta *inferencepb.ModelMetadataResponse, rows []map[string]any, raw bool) (*inferencepb.ModelInferRequest, error) {
	req := &inferencepb.ModelInferRequest{ModelName: meta.Name}
	le := binary.LittleEndian
	for _, spec := range meta.Inputs {
		t := &inferencepb.ModelInferRequest_InferInputTensor{Name: spec.Name, Datatype: spec.Datatype, Shape: []int64{int64(len(rows)), 1}}
		c := &inferencepb.InferTensorContents{}
		var buf []byte
		for i, row := range rows {
			v, ok := row[spec.Name]
			if !ok {
				return nil, fmt.Errorf("instance %d has no %s", i, spec.Name)
			}
			switch spec.Datatype {
			case "FP32", "FP64", "INT64", "INT32":
				f, ok := v.(float64)
				if !ok {
					return nil, fmt.Errorf("instance %d: %s is not a number", i, spec.Name)
				}
				switch spec.Datatype {
				case "FP32":
					c.Fp32Contents = append(c.Fp32Contents, float32(f))
					buf = le.AppendUint32(buf, math.Float32bits(float32(f)))
				case "FP64":
					c.Fp64Contents = append(c.Fp64Contents, f)
					buf = le.AppendUint64(buf, math.Float64bits(f))
				case "INT64":
					c.Int64Contents = append(c.Int64Contents, int64(f))
					buf = le.AppendUint64(buf, uint64(int64(f)))
				case "INT32":
					c.IntContents = append(c.IntContents, int32(f))
					buf = le.AppendUint32(buf, uint32(int32(f)))
				}
			case "BYTES":
				s := fmt.Sprint(v)
				c.BytesContents = append(c.BytesContents, []byte(s))
				buf = le.AppendUint32(buf, uint32(len(s)))
				buf = append(buf, s...)
			case "BOOL":
				b, _ := v.(bool)
				c.BoolContents = append(c.BoolContents, b)
				if b {
					buf = append(buf, 1)
				} else {
					buf = append(buf, 0)
				}
			default:
				return nil, fmt.Errorf("input %s: datatype %s not supported here", spec.Name, spec.Datatype)
			}
		}
		if raw {
			req.RawInputContents = append(req.RawInputContents, buf)
		} else {
			t.Contents = c
		}
		req.Inputs = append(req.Inputs, t)
	}
	return req, nil
}
