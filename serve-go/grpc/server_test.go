package grpc_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ggrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"skl2go"
	skgrpc "skl2go/grpc"
	"skl2go/grpc/inferencepb"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/onnx"
	"skl2go/repository"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

// served is a gRPC server on loopback for the fixture models (the
// regressor as versions 1 and 2, the classifier as version 1), a client of
// it, and the registry its inference metrics go to.
type served struct {
	client   inferencepb.GRPCInferenceServiceClient
	health   healthpb.HealthClient
	server   *skgrpc.Server
	registry *prometheus.Registry
	meta     map[string]*skl2go.Metadata // by model name, the latest version
}

func serve(t testing.TB, config skgrpc.Config) *served {
	t.Helper()
	return serveWith(t, config, skhttp.Config{}, nil)
}

// serveWith is serve with the REST server's config (its limits defaulted),
// whose inference steps the gRPC server takes, over the store wrap makes
// of the fixture models (nil: the store itself).
func serveWith(t testing.TB, config skgrpc.Config, restConfig skhttp.Config, wrap func(*repository.Store) skl2go.ModelStore) *served {
	t.Helper()
	root := t.TempDir()
	fixture.CopyVersion(t, models, root, 1)
	fixture.CopyVersion(t, models, root, 2)
	fixture.CopyModel(t, models, root, fixture.Classifier, 1)
	var loaded []skl2go.Model
	s := &served{meta: map[string]*skl2go.Metadata{}, registry: prometheus.NewRegistry()}
	for _, mv := range []struct {
		name    string
		version int
	}{{fixture.Model, 1}, {fixture.Model, 2}, {fixture.Classifier, 1}} {
		entry, err := repository.Read(root, mv.name, mv.version)
		if err != nil {
			t.Fatal(err)
		}
		m, err := runtime.Load(entry.Dir, entry.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		loaded = append(loaded, m)
		s.meta[mv.name] = m.Metadata()
	}
	store := repository.NewStore(loaded...)
	t.Cleanup(func() { store.Close() })
	if config.MaxRows == 0 {
		config.MaxRows = 1000
	}
	if config.MaxMessageBytes == 0 {
		config.MaxMessageBytes = 1 << 20
	}
	logger := slog.New(slog.DiscardHandler)
	restConfig.MaxBodyBytes, restConfig.MaxRows = 1<<20, 1000
	var served skl2go.ModelStore = store
	if wrap != nil {
		served = wrap(store)
	}
	rest := skhttp.NewServer(served, restConfig, logger, s.registry)
	t.Cleanup(func() { rest.Shutdown(context.Background()) })
	s.server = skgrpc.NewServer(served, config, logger, rest)
	s.server.SetReady(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.server.Serve(ln)
	t.Cleanup(func() { s.server.Shutdown(context.Background()) })
	conn, err := ggrpc.NewClient(ln.Addr().String(), ggrpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = inferencepb.NewGRPCInferenceServiceClient(conn)
	s.health = healthpb.NewHealthClient(conn)
	return s
}

// examples returns model.json's example instances as one column per input
// (as JSON decodes them) and the predictions sklearn made.
func examples(meta *skl2go.Metadata) (map[string][]float64, []json.RawMessage) {
	cols := map[string][]float64{}
	var want []json.RawMessage
	for _, ex := range meta.Examples {
		var row map[string]float64
		json.Unmarshal(ex.Instance, &row)
		for _, in := range meta.Inputs {
			cols[in.Name] = append(cols[in.Name], row[in.Name])
		}
		want = append(want, ex.Prediction)
	}
	return cols, want
}

// request builds a ModelInferRequest of the example columns, shape
// [rows, 1], with typed contents or raw_input_contents.
func request(meta *skl2go.Metadata, cols map[string][]float64, raw bool) *inferencepb.ModelInferRequest {
	req := &inferencepb.ModelInferRequest{ModelName: meta.Name, Id: "req-1"}
	for _, in := range meta.Inputs {
		values := cols[in.Name]
		t := &inferencepb.ModelInferRequest_InferInputTensor{Name: in.Name, Shape: []int64{int64(len(values)), 1}}
		var buf []byte
		contents := &inferencepb.InferTensorContents{}
		switch in.Type {
		case skl2go.Int64:
			t.Datatype = "INT64"
			for _, v := range values {
				contents.Int64Contents = append(contents.Int64Contents, int64(v))
				buf = binary.LittleEndian.AppendUint64(buf, uint64(int64(v)))
			}
		case skl2go.Float32:
			t.Datatype = "FP32"
			for _, v := range values {
				contents.Fp32Contents = append(contents.Fp32Contents, float32(v))
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(v)))
			}
		}
		if raw {
			req.RawInputContents = append(req.RawInputContents, buf)
		} else {
			t.Contents = contents
		}
		req.Inputs = append(req.Inputs, t)
	}
	return req
}

// floats reads an FP32 output, typed or raw.
func floats(t *testing.T, resp *inferencepb.ModelInferResponse, i int) []float32 {
	t.Helper()
	if len(resp.RawOutputContents) == 0 {
		return resp.Outputs[i].GetContents().GetFp32Contents()
	}
	raw := resp.RawOutputContents[i]
	out := make([]float32, len(raw)/4)
	for j := range out {
		out[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
	}
	return out
}

func int64s(t *testing.T, resp *inferencepb.ModelInferResponse, i int) []int64 {
	t.Helper()
	if len(resp.RawOutputContents) == 0 {
		return resp.Outputs[i].GetContents().GetInt64Contents()
	}
	raw := resp.RawOutputContents[i]
	out := make([]int64, len(raw)/8)
	for j := range out {
		out[j] = int64(binary.LittleEndian.Uint64(raw[8*j:]))
	}
	return out
}

// TestModelInferMatchesSklearn sends the regressor's examples with typed
// and with raw contents, and checks sklearn's predictions come back, in the
// same form as sent.
func TestModelInferMatchesSklearn(t *testing.T) {
	s := serve(t, skgrpc.Config{})
	meta := s.meta[fixture.Model]
	cols, want := examples(meta)
	for _, raw := range []bool{false, true} {
		resp, err := s.client.ModelInfer(context.Background(), request(meta, cols, raw))
		if err != nil {
			t.Fatalf("raw=%v: %v", raw, err)
		}
		if resp.ModelName != fixture.Model || resp.ModelVersion != "2" || resp.Id != "req-1" {
			t.Errorf("raw=%v: model %q version %q id %q, want %s 2 req-1", raw, resp.ModelName, resp.ModelVersion, resp.Id, fixture.Model)
		}
		if got := len(resp.RawOutputContents) > 0; got != raw {
			t.Errorf("raw=%v: response raw=%v, want the request's form", raw, got)
		}
		out := resp.Outputs[0]
		if out.Name != "variable" || out.Datatype != "FP32" || len(out.Shape) != 2 || out.Shape[0] != int64(len(want)) {
			t.Errorf("raw=%v: output %s %s %v", raw, out.Name, out.Datatype, out.Shape)
		}
		got := floats(t, resp, 0)
		if len(got) != len(want) {
			t.Fatalf("raw=%v: %d predictions, want %d", raw, len(got), len(want))
		}
		for i := range want {
			var w float64
			json.Unmarshal(want[i], &w)
			if !skl2go.WithinTolerance(float64(got[i]), w) {
				t.Errorf("raw=%v: row %d: got %v, sklearn %v", raw, i, got[i], w)
			}
		}
	}
}

// TestModelInferVersion pins version 1 with model_version.
func TestModelInferVersion(t *testing.T) {
	s := serve(t, skgrpc.Config{})
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	req := request(meta, cols, true)
	req.ModelVersion = "1"
	resp, err := s.client.ModelInfer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelVersion != "1" {
		t.Errorf("model_version %q, want 1", resp.ModelVersion)
	}
}

// TestModelInferClassifier checks labels and probabilities against
// sklearn's, typed and raw, and that outputs can be chosen.
func TestModelInferClassifier(t *testing.T) {
	s := serve(t, skgrpc.Config{})
	meta := s.meta[fixture.Classifier]
	cols, want := examples(meta)
	for _, raw := range []bool{false, true} {
		resp, err := s.client.ModelInfer(context.Background(), request(meta, cols, raw))
		if err != nil {
			t.Fatalf("raw=%v: %v", raw, err)
		}
		labels, probs := int64s(t, resp, 0), floats(t, resp, 1)
		if len(labels) != len(want) || len(probs) != 2*len(want) {
			t.Fatalf("raw=%v: %d labels, %d probabilities for %d rows", raw, len(labels), len(probs), len(want))
		}
		for i := range want {
			var w skl2go.ClassPrediction
			json.Unmarshal(want[i], &w)
			if labels[i] != w.Label || !skl2go.WithinTolerance(float64(probs[2*i+1]), w.Probabilities[1]) {
				t.Errorf("raw=%v: row %d: label %d p %v, sklearn %d %v", raw, i, labels[i], probs[2*i:2*i+2], w.Label, w.Probabilities)
			}
		}
	}
	req := request(meta, cols, false)
	req.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities"}}
	resp, err := s.client.ModelInfer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "probabilities" || resp.Outputs[0].Datatype != "FP32" {
		t.Errorf("outputs %v, want probabilities alone", resp.Outputs)
	}
}

// TestHealthAndMetadata checks the health RPCs, the standard health
// service and the metadata documents.
func TestHealthAndMetadata(t *testing.T) {
	s := serve(t, skgrpc.Config{Version: "test"})
	ctx := context.Background()
	if r, err := s.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Errorf("ServerLive: %v %v", r, err)
	}
	if r, err := s.client.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Errorf("ServerReady: %v %v", r, err)
	}
	for _, c := range []struct {
		name, version string
		ready         bool
	}{{fixture.Model, "", true}, {fixture.Model, "1", true}, {fixture.Model, "7", false}, {"nope", "", false}} {
		r, err := s.client.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: c.name, Version: c.version})
		if err != nil || r.Ready != c.ready {
			t.Errorf("ModelReady(%s, %q) = %v %v, want ready=%v", c.name, c.version, r, err, c.ready)
		}
	}
	for _, service := range []string{"", skgrpc.ServiceName} {
		r, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", service, r, err)
		}
	}
	md, err := s.client.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{})
	if err != nil || md.Name != "skl2go" || md.Version != "test" {
		t.Errorf("ServerMetadata: %v %v", md, err)
	}
	mm, err := s.client.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: fixture.Model})
	if err != nil {
		t.Fatal(err)
	}
	if mm.Name != fixture.Model || mm.Platform != "onnx_onnxv1" || strings.Join(mm.Versions, ",") != "1,2" ||
		len(mm.Inputs) != 5 || mm.Inputs[2].Name != "trip_distance" || mm.Inputs[2].Datatype != "FP32" ||
		len(mm.Outputs) != 1 || mm.Outputs[0].Datatype != "FP32" {
		t.Errorf("ModelMetadata: %v", mm)
	}
	s.server.SetReady(false)
	if r, _ := s.client.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); r.GetReady() {
		t.Error("ServerReady after SetReady(false): ready")
	}
	if r, _ := s.health.Check(ctx, &healthpb.HealthCheckRequest{}); r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after SetReady(false): %v", r.GetStatus())
	}
}

// TestModelInferErrors checks that bad requests get the status code the
// REST API's status maps to, with a message naming the field.
func TestModelInferErrors(t *testing.T) {
	s := serve(t, skgrpc.Config{MaxRows: 10, MaxMessageBytes: 64 << 10})
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	valid := func(raw bool) *inferencepb.ModelInferRequest { return request(meta, cols, raw) }
	many := map[string][]float64{}
	for name, values := range cols {
		for len(many[name]) < 20 {
			many[name] = append(many[name], values...)
		}
	}
	huge := map[string][]float64{}
	for name := range cols {
		huge[name] = make([]float64, 10000)
	}
	cases := []struct {
		name string
		edit func() *inferencepb.ModelInferRequest
		code codes.Code
		msg  string
	}{
		{"no model", func() *inferencepb.ModelInferRequest { r := valid(false); r.ModelName = ""; return r }, codes.InvalidArgument, "model_name: missing"},
		{"unknown model", func() *inferencepb.ModelInferRequest { r := valid(false); r.ModelName = "nope"; return r }, codes.NotFound, "nope"},
		{"bad version", func() *inferencepb.ModelInferRequest { r := valid(false); r.ModelVersion = "x"; return r }, codes.InvalidArgument, "model_version: expected a positive integer"},
		{"unknown version", func() *inferencepb.ModelInferRequest { r := valid(false); r.ModelVersion = "9"; return r }, codes.NotFound, "9"},
		{"no inputs", func() *inferencepb.ModelInferRequest { r := valid(false); r.Inputs = nil; return r }, codes.InvalidArgument, "inputs: none given"},
		{"unknown input", func() *inferencepb.ModelInferRequest { r := valid(false); r.Inputs[0].Name = "zone"; return r }, codes.InvalidArgument, `inputs[0]: unknown input "zone"`},
		{"missing input", func() *inferencepb.ModelInferRequest { r := valid(false); r.Inputs = r.Inputs[1:]; return r }, codes.InvalidArgument, `input "PULocationID" is missing`},
		{"datatype", func() *inferencepb.ModelInferRequest { r := valid(false); r.Inputs[2].Datatype = "FP64"; return r }, codes.InvalidArgument, `input "trip_distance": datatype FP64 does not match the model, which expects FP32`},
		{"shape", func() *inferencepb.ModelInferRequest { r := valid(false); r.Inputs[2].Shape = []int64{8, 2}; return r }, codes.InvalidArgument, `input "trip_distance": shape [8, 2] does not match`},
		{"wrong contents field", func() *inferencepb.ModelInferRequest {
			r := valid(false)
			r.Inputs[2].Contents = &inferencepb.InferTensorContents{Fp64Contents: make([]float64, 8)}
			return r
		}, codes.InvalidArgument, `input "trip_distance": contents.fp64_contents does not match datatype FP32, whose elements go in contents.fp32_contents`},
		{"too few elements", func() *inferencepb.ModelInferRequest {
			r := valid(false)
			r.Inputs[2].Contents.Fp32Contents = r.Inputs[2].Contents.Fp32Contents[:3]
			return r
		}, codes.InvalidArgument, `input "trip_distance".contents.fp32_contents: contents have 3 elements, the shape needs 8`},
		{"no data", func() *inferencepb.ModelInferRequest { r := valid(false); r.Inputs[1].Contents = nil; return r }, codes.InvalidArgument, `input "DOLocationID": no data`},
		{"out of range", func() *inferencepb.ModelInferRequest {
			r := valid(false)
			r.Inputs[2].Contents.Fp32Contents[0] = 1e6
			return r
		}, codes.InvalidArgument, "element 0: 1e+06 is out of range: the model accepts 0 to 1000"},
		{"NaN", func() *inferencepb.ModelInferRequest {
			r := valid(false)
			r.Inputs[2].Contents.Fp32Contents[1] = float32(math.NaN())
			return r
		}, codes.InvalidArgument, "element 1 is NaN: only finite numbers are accepted"},
		{"raw count", func() *inferencepb.ModelInferRequest {
			r := valid(true)
			r.RawInputContents = r.RawInputContents[1:]
			return r
		}, codes.InvalidArgument, "raw_input_contents: 4 entries for 5 inputs"},
		{"raw size", func() *inferencepb.ModelInferRequest {
			r := valid(true)
			r.RawInputContents[2] = r.RawInputContents[2][1:]
			return r
		}, codes.InvalidArgument, `input "trip_distance": 31 bytes of binary data`},
		{"raw and contents", func() *inferencepb.ModelInferRequest {
			r := valid(true)
			r.Inputs[0].Contents = &inferencepb.InferTensorContents{Int64Contents: []int64{1}}
			return r
		}, codes.InvalidArgument, `input "PULocationID": has contents.int64_contents and raw_input_contents[0]: give one`},
		{"unknown output", func() *inferencepb.ModelInferRequest {
			r := valid(false)
			r.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "label"}}
			return r
		}, codes.InvalidArgument, `outputs[0]: unknown output "label"`},
		{"shared memory", func() *inferencepb.ModelInferRequest {
			r := valid(false)
			r.Inputs[0].Parameters = map[string]*inferencepb.InferParameter{"shared_memory_region": {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: "r"}}}
			return r
		}, codes.InvalidArgument, "shared memory is not supported"},
		{"too many rows", func() *inferencepb.ModelInferRequest { return request(meta, many, true) }, codes.ResourceExhausted, "too many rows: at most 10"},
		{"message too large", func() *inferencepb.ModelInferRequest { return request(meta, huge, false) }, codes.ResourceExhausted, "larger than max"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.client.ModelInfer(context.Background(), c.edit())
			st := status.Convert(err)
			if st.Code() != c.code || !strings.Contains(st.Message(), c.msg) {
				t.Errorf("got %s %q, want %s containing %q", st.Code(), st.Message(), c.code, c.msg)
			}
		})
	}
}

// TestMetricsLabelledGRPC checks that gRPC requests land in the inference
// series REST requests use, labelled protocol="grpc".
func TestMetricsLabelledGRPC(t *testing.T) {
	s := serve(t, skgrpc.Config{})
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	if _, err := s.client.ModelInfer(context.Background(), request(meta, cols, false)); err != nil {
		t.Fatal(err)
	}
	bad := request(meta, cols, false)
	bad.Inputs[2].Datatype = "FP64"
	s.client.ModelInfer(context.Background(), bad)
	found := counters(t, s, func(labels map[string]string) (string, bool) {
		return labels["reason"], labels["protocol"] == "grpc" && labels["model"] == fixture.Model
	})
	for series, want := range map[string]float64{
		"skl2go_inference_request_success_total/":        1,
		"skl2go_inference_count_total/":                  float64(len(meta.Examples)),
		"skl2go_inference_request_failure_total/invalid": 1,
	} {
		if found[series] != want {
			t.Errorf("%s{protocol=grpc} = %v, want %v (found %v)", series, found[series], want, found)
		}
	}
}

// TestStatusCodes is the table of error codes to gRPC status codes: each
// the counterpart of the HTTP status the REST API answers.
func TestStatusCodes(t *testing.T) {
	for code, want := range map[string]codes.Code{
		skl2go.EINVALID:      codes.InvalidArgument,   // 400
		skl2go.ENOTFOUND:     codes.NotFound,          // 404
		skl2go.ETOOLARGE:     codes.ResourceExhausted, // 413
		skl2go.ETIMEOUT:      codes.DeadlineExceeded,  // 408
		skl2go.EUNSUPPORTED:  codes.InvalidArgument,   // 415
		skl2go.EUNAVAILABLE:  codes.Unavailable,       // 503
		skl2go.EOVERLOADED:   codes.Unavailable,       // 503
		skl2go.EINTERNAL:     codes.Internal,          // 500
		skl2go.EUNAUTHORIZED: codes.Unauthenticated,   // 401
		skl2go.EFORBIDDEN:    codes.PermissionDenied,  // 403
		"no_such_code":       codes.Internal,
	} {
		if got := skgrpc.StatusCode(&skl2go.Error{Code: code, Message: "m"}); got != want {
			t.Errorf("%s: %s, want %s", code, got, want)
		}
	}
	if got := skgrpc.StatusCode(nil); got != codes.OK {
		t.Errorf("nil: %s, want OK", got)
	}
}

// TestShutdownDrains stops the server while calls are in flight: each call
// is answered, or refused UNAVAILABLE once the server has stopped taking
// calls (a client retries those elsewhere), never cut off otherwise.
func TestShutdownDrains(t *testing.T) {
	s := serve(t, skgrpc.Config{})
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	req := request(meta, cols, true)
	codesSeen := make(chan codes.Code, 400)
	done := make(chan struct{})
	for w := 0; w < 8; w++ {
		go func() {
			for i := 0; i < 50; i++ {
				_, err := s.client.ModelInfer(context.Background(), req)
				codesSeen <- status.Code(err)
			}
			done <- struct{}{}
		}()
	}
	for len(codesSeen) < 20 {
		time.Sleep(time.Millisecond)
	}
	if err := s.server.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for w := 0; w < 8; w++ {
		<-done
	}
	close(codesSeen)
	answered := 0
	for c := range codesSeen {
		switch c {
		case codes.OK:
			answered++
		case codes.Unavailable:
		default:
			t.Errorf("a call during shutdown ended %s", c)
		}
	}
	if answered < 20 {
		t.Errorf("%d calls answered, want at least the 20 before shutdown", answered)
	}
}

// counters sums the counters of s's metrics whose labels keep accepts, by
// "<metric name>/<the key keep makes of their labels>".
func counters(t *testing.T, s *served, keep func(labels map[string]string) (string, bool)) map[string]float64 {
	t.Helper()
	families, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if key, ok := keep(labels); ok {
				found[f.GetName()+"/"+key] += m.GetCounter().GetValue()
			}
		}
	}
	return found
}
