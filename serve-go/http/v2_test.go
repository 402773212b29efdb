package http_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
)

// v2Columns returns model.json's example instances as one column per input
// (values as JSON decodes them) and sklearn's predictions.
func v2Columns(meta *skl2go.Metadata) (map[string][]float64, []float64) {
	instances, want := fixture.Examples(meta)
	cols := map[string][]float64{}
	for _, raw := range instances {
		var row map[string]float64
		json.Unmarshal(raw, &row)
		for _, in := range meta.Inputs {
			cols[in.Name] = append(cols[in.Name], row[in.Name])
		}
	}
	return cols, want
}

var v2Datatypes = map[skl2go.DataType]string{skl2go.Int64: "INT64", skl2go.Float32: "FP32"}

// v2JSONInputs builds the "inputs" of a JSON infer request, shape [rows, 1];
// nested writes data as [[v], [v], …] instead of flat.
func v2JSONInputs(meta *skl2go.Metadata, cols map[string][]float64, nested bool) []map[string]any {
	var inputs []map[string]any
	for _, in := range meta.Inputs {
		var data any = cols[in.Name]
		if nested {
			rows := make([][]float64, len(cols[in.Name]))
			for i, v := range cols[in.Name] {
				rows[i] = []float64{v}
			}
			data = rows
		}
		inputs = append(inputs, map[string]any{
			"name": in.Name, "datatype": v2Datatypes[in.Type], "shape": []int{len(cols[in.Name]), 1}, "data": data,
		})
	}
	return inputs
}

// v2BinaryBody builds a request whose inputs are all binary tensor data, as
// tritonclient sends them by default; it returns the body and the JSON length.
func v2BinaryBody(t testing.TB, meta *skl2go.Metadata, cols map[string][]float64, request map[string]any) ([]byte, int) {
	t.Helper()
	var inputs []map[string]any
	var tensors []byte
	for _, in := range meta.Inputs {
		start := len(tensors)
		for _, v := range cols[in.Name] {
			switch in.Type {
			case skl2go.Int64:
				tensors = binary.LittleEndian.AppendUint64(tensors, uint64(int64(v)))
			case skl2go.Float32:
				tensors = binary.LittleEndian.AppendUint32(tensors, math.Float32bits(float32(v)))
			default:
				t.Fatalf("fixture input %s has type %s", in.Name, in.Type)
			}
		}
		inputs = append(inputs, map[string]any{
			"name": in.Name, "datatype": v2Datatypes[in.Type], "shape": []int{len(cols[in.Name]), 1},
			"parameters": map[string]any{"binary_data_size": len(tensors) - start},
		})
	}
	request["inputs"] = inputs
	header, _ := json.Marshal(request)
	return append(header, tensors...), len(header)
}

// v2Response is an infer answer: its JSON, and the binary data after it.
type v2Response struct {
	status  int
	header  map[string][]string
	body    map[string]any
	tensors []byte
	raw     string
}

func doV2(t testing.TB, s *skhttp.Server, path string, body []byte, headers map[string]string) v2Response {
	t.Helper()
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	r := v2Response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	data := rec.Body.Bytes()
	if n := rec.Header().Get("Inference-Header-Content-Length"); n != "" {
		size, err := strconv.Atoi(n)
		if err != nil || size > len(data) {
			t.Fatalf("Inference-Header-Content-Length %q for a %d-byte body", n, len(data))
		}
		data, r.tensors = data[:size], data[size:]
	}
	if err := json.Unmarshal(data, &r.body); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %q", path, rec.Body.String())
	}
	return r
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// checkOutput compares the one output of a regression answer with sklearn.
func checkOutput(t *testing.T, r v2Response, want []float64) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	outputs := r.body["outputs"].([]any)
	if len(outputs) != 1 {
		t.Fatalf("%d outputs, want 1", len(outputs))
	}
	out := outputs[0].(map[string]any)
	if out["name"] != "variable" || out["datatype"] != "FP32" || fmt.Sprint(out["shape"]) != fmt.Sprintf("[%d 1]", len(want)) {
		t.Errorf("output = name %v datatype %v shape %v", out["name"], out["datatype"], out["shape"])
	}
	var got []float64
	if params, ok := out["parameters"].(map[string]any); ok {
		size := int(params["binary_data_size"].(float64))
		if size != 4*len(want) || len(r.tensors) != size || out["data"] != nil {
			t.Fatalf("binary output: binary_data_size %d, %d bytes after the JSON, data %v", size, len(r.tensors), out["data"])
		}
		for i := 0; i < size; i += 4 {
			got = append(got, float64(math.Float32frombits(binary.LittleEndian.Uint32(r.tensors[i:]))))
		}
	} else {
		for _, v := range out["data"].([]any) {
			got = append(got, v.(float64))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if !skl2go.WithinTolerance(got[i], want[i]) {
			t.Errorf("row %d: got %v, sklearn %v", i, got[i], want[i])
		}
	}
}

func TestV2InferMatchesSklearn(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	cols, want := v2Columns(meta)
	binaryBody, headerLen := v2BinaryBody(t, meta, cols, map[string]any{"id": "req-7", "parameters": map[string]any{"binary_data_output": true}})
	// KServe's SDK names the model in the request, and sends binary data.
	namedBody, namedLen := v2BinaryBody(t, meta, cols, map[string]any{"id": "req-7", "model_name": "trip_duration"})
	var gzipped bytes.Buffer
	zw := gzip.NewWriter(&gzipped)
	zw.Write(mustJSON(map[string]any{"inputs": v2JSONInputs(meta, cols, false)}))
	zw.Close()
	tests := []struct {
		name, path string
		body       []byte
		headers    map[string]string
		version    string
		binaryOut  bool
	}{
		{"JSON flat, latest", "/v2/models/trip_duration/infer",
			mustJSON(map[string]any{"id": "req-7", "inputs": v2JSONInputs(meta, cols, false)}),
			map[string]string{"Content-Type": "application/json"}, "2", false},
		{"JSON nested, pinned version", "/v2/models/trip_duration/versions/1/infer",
			mustJSON(map[string]any{"id": "req-7", "inputs": v2JSONInputs(meta, cols, true), "outputs": []any{map[string]any{"name": "variable"}}}),
			nil, "1", false},
		{"binary in and out, no Content-Type (as tritonclient)", "/v2/models/trip_duration/infer",
			binaryBody, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(headerLen)}, "2", true},
		{"JSON in, binary out requested per output", "/v2/models/trip_duration/infer",
			mustJSON(map[string]any{"id": "req-7", "inputs": v2JSONInputs(meta, cols, false),
				"outputs": []any{map[string]any{"name": "variable", "parameters": map[string]any{"binary_data": true}}}}),
			nil, "2", true},
		{"gzip body", "/v2/models/trip_duration/infer", gzipped.Bytes(),
			map[string]string{"Content-Encoding": "gzip"}, "2", false},
		{"model_name and model_version that agree with the URL", "/v2/models/trip_duration/versions/1/infer",
			mustJSON(map[string]any{"id": "req-7", "model_name": "trip_duration", "model_version": "1", "inputs": v2JSONInputs(meta, cols, false)}),
			nil, "1", false},
		{"model_version of the latest, unpinned", "/v2/models/trip_duration/infer",
			mustJSON(map[string]any{"id": "req-7", "model_version": "2", "inputs": v2JSONInputs(meta, cols, false)}), nil, "2", false},
		{"model_name with binary inputs (as KServe's SDK)", "/v2/models/trip_duration/infer", namedBody,
			map[string]string{"Inference-Header-Content-Length": strconv.Itoa(namedLen), "Content-Type": "application/octet-stream"}, "2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := doV2(t, s, tt.path, tt.body, tt.headers)
			checkOutput(t, r, want)
			if r.body["model_name"] != "trip_duration" || r.body["model_version"] != tt.version {
				t.Errorf("model_name %v, model_version %v; want trip_duration %s", r.body["model_name"], r.body["model_version"], tt.version)
			}
			if tt.name != "gzip body" && r.body["id"] != "req-7" {
				t.Errorf("id = %v, want req-7 echoed", r.body["id"])
			}
			wantType := "application/json"
			if tt.binaryOut {
				wantType = "application/octet-stream"
			}
			if got := r.header["Content-Type"]; len(got) != 1 || got[0] != wantType {
				t.Errorf("Content-Type = %v, want %s", got, wantType)
			}
		})
	}
	r := doV2(t, s, "/v2/models/trip_duration/infer", binaryBody, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(headerLen)})
	if fmt.Sprint(r.body["parameters"]) != "map[binary_data_output:true]" {
		t.Errorf("parameters = %v, want the request's echoed", r.body["parameters"])
	}
}

// TestV2InferMixesJSONAndBinaryInputs sends some inputs as JSON and the
// others as binary data, out of the model's order.
func TestV2InferMixesJSONAndBinaryInputs(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	cols, want := v2Columns(meta)
	jsonInputs := v2JSONInputs(meta, cols, false)
	var binaryInputs []any
	var tensors []byte
	var inputs []any
	for i := len(jsonInputs) - 1; i >= 0; i-- { // reversed order
		in := jsonInputs[i]
		if i%2 == 1 {
			inputs = append(inputs, in)
			continue
		}
		name := in["name"].(string)
		start := len(tensors)
		for _, v := range cols[name] {
			if in["datatype"] == "INT64" {
				tensors = binary.LittleEndian.AppendUint64(tensors, uint64(int64(v)))
			} else {
				tensors = binary.LittleEndian.AppendUint32(tensors, math.Float32bits(float32(v)))
			}
		}
		delete(in, "data")
		in["parameters"] = map[string]any{"binary_data_size": len(tensors) - start}
		binaryInputs = append(binaryInputs, in)
		inputs = append(inputs, in)
	}
	if len(binaryInputs) == 0 || len(binaryInputs) == len(inputs) {
		t.Fatal("the fixture should give both kinds")
	}
	header := mustJSON(map[string]any{"inputs": inputs})
	r := doV2(t, s, "/v2/models/trip_duration/infer", append(header, tensors...),
		map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(header)), "Content-Type": "application/octet-stream"})
	checkOutput(t, r, want)
}

func TestV2InferRefusesBadRequests(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{MaxBodyBytes: 8192, MaxRows: 3})
	cols, _ := v2Columns(meta)
	for name := range cols {
		cols[name] = cols[name][:2]
	}
	request := func(edit func(req map[string]any, inputs []map[string]any)) []byte {
		inputs := v2JSONInputs(meta, cols, false)
		req := map[string]any{"inputs": inputs}
		edit(req, inputs)
		return mustJSON(req)
	}
	input := func(inputs []map[string]any, name string) map[string]any {
		for _, in := range inputs {
			if in["name"] == name {
				return in
			}
		}
		t.Fatalf("no input %s", name)
		return nil
	}
	good := request(func(map[string]any, []map[string]any) {})
	binBody, binLen := v2BinaryBody(t, meta, cols, map[string]any{})
	withLen := func(n int) map[string]string {
		return map[string]string{"Inference-Header-Content-Length": strconv.Itoa(n)}
	}
	nanBody := append([]byte(nil), binBody...)
	// trip_distance is the third input: its two float32 values follow two 16-byte int64 inputs.
	binary.LittleEndian.PutUint32(nanBody[binLen+32+4:], math.Float32bits(float32(math.NaN())))
	const infer = "/v2/models/trip_duration/infer"
	tests := []struct {
		name, path string
		body       []byte
		headers    map[string]string
		status     int
		message    string
	}{
		{"unknown input", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["name"] = "fare_amount" }), nil, 400,
			`inputs[0]: unknown input "fare_amount" (model trip_duration has inputs: PULocationID, DOLocationID, trip_distance, pickup_hour, pickup_weekday)`},
		{"missing input", infer, request(func(r map[string]any, in []map[string]any) { r["inputs"] = in[1:] }), nil, 400,
			`input "PULocationID" is missing`},
		{"input twice", infer, request(func(r map[string]any, in []map[string]any) { r["inputs"] = append(in, in[0]) }), nil, 400,
			`inputs[5]: input "PULocationID" is given twice`},
		{"datatype of another width", infer, request(func(_ map[string]any, in []map[string]any) { input(in, "trip_distance")["datatype"] = "FP64" }), nil, 400,
			`input "trip_distance": datatype FP64 does not match the model, which expects FP32`},
		{"INT32 for INT64", infer, request(func(_ map[string]any, in []map[string]any) { input(in, "pickup_hour")["datatype"] = "INT32" }), nil, 400,
			`input "pickup_hour": datatype INT32 does not match the model, which expects INT64`},
		{"unknown datatype", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["datatype"] = "LONG" }), nil, 400,
			`input "PULocationID": unknown datatype "LONG" (the model expects INT64)`},
		{"missing datatype", infer, request(func(_ map[string]any, in []map[string]any) { delete(in[0], "datatype") }), nil, 400,
			`input "PULocationID": missing field "datatype"`},
		{"missing name", infer, request(func(_ map[string]any, in []map[string]any) { delete(in[1], "name") }), nil, 400,
			`inputs[1]: missing field "name"`},
		{"rank", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["shape"] = []int{2} }), nil, 400,
			`input "PULocationID": shape [2] does not match the model's [-1, 1] (-1: any number of rows)`},
		{"fixed dimension", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["shape"] = []int{1, 2} }), nil, 400,
			`shape [1, 2] does not match the model's [-1, 1]`},
		{"negative dimension", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["shape"] = []int{-1, 1} }), nil, 400,
			`input "PULocationID": shape must be an array of non-negative integers, got [-1,1]`},
		{"shape not integers", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["shape"] = "2x1" }), nil, 400,
			`shape must be an array of non-negative integers, got "2x1"`},
		{"rows disagree", infer, request(func(_ map[string]any, in []map[string]any) {
			in[1]["shape"], in[1]["data"] = []int{1, 1}, []int{75}
		}), nil, 400, `input "DOLocationID": shape [1, 1] has 1 rows, but the inputs before it have 2`},
		{"fewer elements than the shape", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["data"] = []int{74} }), nil, 400,
			`input "PULocationID": data has 1 elements, shape [2, 1] needs 2`},
		{"more elements than the shape", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["data"] = []int{74, 75, 76} }), nil, 400,
			`input "PULocationID".data: more than 2 elements`},
		{"no rows", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["shape"], in[0]["data"] = []int{0, 1}, []int{} }), nil, 400,
			`input "PULocationID": shape [0, 1] has no rows: send at least one`},
		{"too many rows", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["shape"] = []int{4, 1} }), nil, 413,
			"too many rows: at most 3 per request"},
		{"string for FP32", infer, request(func(_ map[string]any, in []map[string]any) { input(in, "trip_distance")["data"] = []any{1.5, "2.5"} }), nil, 400,
			`input "trip_distance".data: element 1: expected a number, got string "2.5"`},
		{"fraction for INT64", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["data"] = []any{74.5, 1} }), nil, 400,
			`input "PULocationID".data: element 0: expected an integer, got 74.5`},
		{"data missing", infer, request(func(_ map[string]any, in []map[string]any) { delete(in[0], "data") }), nil, 400,
			`input "PULocationID": missing field "data"`},
		{"unknown input field", infer, request(func(_ map[string]any, in []map[string]any) { in[0]["contents"] = 1 }), nil, 400,
			`inputs[0]: unknown field "contents" (expected name, shape, datatype, parameters, data)`},
		{"shared memory", infer, request(func(_ map[string]any, in []map[string]any) {
			in[0]["parameters"] = map[string]any{"shared_memory_region": "r"}
		}), nil, 400, `input "PULocationID": shared memory is not supported`},
		{"unknown output", infer, request(func(r map[string]any, _ []map[string]any) { r["outputs"] = []any{map[string]any{"name": "label"}} }), nil, 400,
			`outputs[0]: unknown output "label" (model trip_duration has outputs: variable)`},
		{"output twice", infer, request(func(r map[string]any, _ []map[string]any) {
			r["outputs"] = []any{map[string]any{"name": "variable"}, map[string]any{"name": "variable"}}
		}), nil, 400, `outputs[1]: output "variable" is requested twice`},
		{"classification extension", infer, request(func(r map[string]any, _ []map[string]any) {
			r["outputs"] = []any{map[string]any{"name": "variable", "parameters": map[string]any{"classification": 2}}}
		}), nil, 400, `output "variable": parameters.classification is not supported`},
		{"binary_data not a boolean", infer, request(func(r map[string]any, _ []map[string]any) {
			r["outputs"] = []any{map[string]any{"name": "variable", "parameters": map[string]any{"binary_data": "yes"}}}
		}), nil, 400, `output "variable".parameters.binary_data: expected true or false, got a string`},
		{"binary_data_output not a boolean", infer, request(func(r map[string]any, _ []map[string]any) {
			r["parameters"] = map[string]any{"binary_data_output": 1}
		}), nil, 400, `parameters.binary_data_output: expected true or false, got a number`},
		{"parameter value an object", infer, request(func(r map[string]any, _ []map[string]any) {
			r["parameters"] = map[string]any{"priority": map[string]any{}}
		}), nil, 400, `parameters.priority: expected a string, number or boolean, got an object`},
		{"id not a string", infer, request(func(r map[string]any, _ []map[string]any) { r["id"] = 42 }), nil, 400,
			`id: expected a string, got a number`},
		{"unknown top-level field", infer, request(func(r map[string]any, _ []map[string]any) { r["instances"] = []any{} }), nil, 400,
			`body: unknown field "instances" (expected id, model_name, model_version, parameters, inputs, outputs)`},
		{"model_name of another model", infer, request(func(r map[string]any, _ []map[string]any) { r["model_name"] = "tip_given" }), nil, 400,
			`model_name: "tip_given" contradicts the URL, which names model "trip_duration"`},
		{"model_name not a string", infer, request(func(r map[string]any, _ []map[string]any) { r["model_name"] = 7 }), nil, 400,
			`model_name: expected a string, got a number`},
		{"model_version of another version", infer, request(func(r map[string]any, _ []map[string]any) { r["model_version"] = "1" }), nil, 400,
			`model_version: "1" contradicts the URL, which is answered by version 2 of "trip_duration"`},
		{"model_version another pinned version", "/v2/models/trip_duration/versions/1/infer", request(func(r map[string]any, _ []map[string]any) { r["model_version"] = "2" }), nil, 400,
			`model_version: "2" contradicts the URL, which is answered by version 1 of "trip_duration"`},
		{"model_version a number", infer, request(func(r map[string]any, _ []map[string]any) { r["model_version"] = 2 }), nil, 400,
			`model_version: expected a string, got a number`},
		{"no inputs", infer, []byte(`{"id": "1"}`), nil, 400, `missing field "inputs" (model trip_duration has inputs: PULocationID`},
		{"inputs not an array", infer, []byte(`{"inputs": {}}`), nil, 400, `inputs: expected an array of objects, got an object`},
		{"body an array", infer, []byte(`[]`), nil, 400, `body: expected an object, got an array`},
		{"empty body", infer, nil, nil, 400, `empty body`},
		{"malformed JSON", infer, []byte(`{"inputs": [}`), nil, 400, `malformed JSON at byte`},
		{"binary size without the header", infer, binBody[:binLen], nil, 400,
			`input "PULocationID": parameters.binary_data_size needs the Inference-Header-Content-Length header`},
		{"binary data short", infer, binBody[:len(binBody)-1], withLen(binLen), 400,
			`input "pickup_weekday": parameters.binary_data_size is 16, but only 15 bytes of binary data are left`},
		{"binary data extra", infer, append(append([]byte(nil), binBody...), 0), withLen(binLen), 400,
			`1 bytes of binary data after the JSON header are not claimed by any input's parameters.binary_data_size`},
		{"binary NaN", infer, nanBody, withLen(binLen), 400,
			`input "trip_distance": element 1 is NaN: only finite numbers are accepted`},
		{"header length past the body", infer, good, withLen(len(good) + 1), 400,
			fmt.Sprintf("Inference-Header-Content-Length is %d, but the body has only %d bytes", len(good)+1, len(good))},
		{"header length not a number", infer, good, map[string]string{"Inference-Header-Content-Length": "ten"}, 400,
			`Inference-Header-Content-Length must be a non-negative integer, got "ten"`},
		{"body too large", infer, append(good, bytes.Repeat([]byte(" "), 9000)...), nil, 413,
			"request body too large: the limit is 8192 bytes"},
		{"text body", infer, good, map[string]string{"Content-Type": "text/plain"}, 415,
			`Content-Type must be application/json or application/octet-stream, got "text/plain"`},
		{"unknown encoding", infer, good, map[string]string{"Content-Encoding": "br"}, 415,
			`Content-Encoding "br" is not supported: use gzip, deflate or none`},
		{"not gzip", infer, good, map[string]string{"Content-Encoding": "gzip"}, 400, `body is not valid gzip data`},
		{"unknown model", "/v2/models/nope/infer", good, nil, 404, `model "nope" not found (serving: trip_duration)`},
		{"unknown version", "/v2/models/trip_duration/versions/9/infer", good, nil, 404, `has no version 9 loaded`},
		{"bad version", "/v2/models/trip_duration/versions/v1/infer", good, nil, 400, `version must be a positive integer, got "v1"`},
		{"bad name", "/v2/models/a..b/infer", good, nil, 400, `invalid model name "a..b"`},
		{"deep path", "/v2/models/trip_duration/labels/infer", good, nil, 404, `no such endpoint: /v2/models/trip_duration/labels`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := doV2(t, s, tt.path, tt.body, tt.headers)
			if r.status != tt.status {
				t.Errorf("status = %d, want %d (%s)", r.status, tt.status, r.raw)
			}
			if ct := r.header["Content-Type"]; len(ct) != 1 || ct[0] != "application/json" {
				t.Errorf("Content-Type = %v, want application/json", ct)
			}
			msg, _ := r.body["error"].(string)
			if !strings.Contains(msg, tt.message) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.message)
			}
		})
	}
	if r := doV2(t, s, infer, good, nil); r.status != 200 {
		t.Errorf("a good request after the bad ones: %d %s", r.status, r.raw)
	}
	if r := doV2(t, s, infer, binBody, withLen(binLen)); r.status != 200 {
		t.Errorf("the good binary request: %d %s", r.status, r.raw)
	}
	// An absurd distance is outside the range model.json declares.
	overflow := request(func(r map[string]any, in []map[string]any) {
		input(in, "trip_distance")["data"] = []any{1, 3e38}
		r["parameters"] = map[string]any{"binary_data_output": true}
	})
	r := doV2(t, s, infer, overflow, nil)
	if msg, _ := r.body["error"].(string); r.status != 400 || !strings.Contains(msg, "element 1: 3e+38 is out of range: the model accepts 0 to 1000") {
		t.Errorf("distance beyond its range: %d %s", r.status, r.raw)
	}
	// Without a declared range, binary output carries what JSON cannot: the
	// model's +Inf for that distance.
	unbounded, _ := serveFixture(t, fixture.Model, withoutRanges(t))
	r = doV2(t, unbounded, infer, overflow, nil)
	if r.status != 200 || len(r.tensors) != 8 || !math.IsInf(float64(math.Float32frombits(binary.LittleEndian.Uint32(r.tensors[4:]))), 1) {
		t.Errorf("binary output of an overflow: %d %s %x", r.status, r.raw, r.tensors)
	}
}

func TestV2MetadataAndHealth(t *testing.T) {
	s, meta := newServer(t, skhttp.Config{})
	h := s.Handler()
	r := do(t, h, "GET", "/v2", "", "")
	if r.status != 200 || r.body["name"] != "skl2go" || fmt.Sprint(r.body["extensions"]) != "[binary_tensor_data]" || r.body["version"] == "" {
		t.Errorf("server metadata = %d %s", r.status, r.raw)
	}
	var inputs []string
	for _, in := range meta.Inputs {
		inputs = append(inputs, fmt.Sprintf(`{"name":%q,"datatype":%q,"shape":[-1,1]}`, in.Name, v2Datatypes[in.Type]))
	}
	wantMeta := `{"inputs":[` + strings.Join(inputs, ",") + `],"name":"trip_duration",` +
		`"outputs":[{"name":"variable","datatype":"FP32","shape":[-1,1]}],"platform":"onnx_onnxv1","versions":["1","2"]}` + "\n"
	for _, path := range []string{"/v2/models/trip_duration", "/v2/models/trip_duration/versions/1"} {
		if r := do(t, h, "GET", path, "", ""); r.status != 200 || r.raw != wantMeta {
			t.Errorf("GET %s = %d\n%s\nwant\n%s", path, r.status, r.raw, wantMeta)
		}
	}
	tests := []struct {
		method, path string
		status       int
		body         string // exact
	}{
		{"GET", "/v2/health/live", 200, `{"live":true}` + "\n"},
		{"GET", "/v2/health/ready", 200, `{"ready":true}` + "\n"},
		{"GET", "/v2/models/trip_duration/ready", 200, `{"name":"trip_duration","ready":true}` + "\n"},
		{"GET", "/v2/models/trip_duration/versions/2/ready", 200, `{"name":"trip_duration","ready":true}` + "\n"},
		{"HEAD", "/v2/health/live", 200, `{"live":true}` + "\n"}, // net/http drops a HEAD answer's body
		{"GET", "/v2/models/trip_duration/versions/3/ready", 404, `{"error":"model \"trip_duration\" has no version 3 loaded (serving versions 1, 2)"}` + "\n"},
		{"GET", "/v2/models/nope/ready", 404, `{"error":"model \"nope\" not found (serving: trip_duration)"}` + "\n"},
		{"GET", "/v2/models/nope", 404, `{"error":"model \"nope\" not found (serving: trip_duration)"}` + "\n"},
		{"GET", "/v2/models/trip_duration/versions/0", 400, `{"error":"version must be a positive integer, got \"0\""}` + "\n"},
		{"POST", "/v2/health/live", 405, `{"error":"method POST not allowed: use GET"}` + "\n"},
		{"GET", "/v2/models/trip_duration/infer", 405, `{"error":"method GET not allowed: use POST"}` + "\n"},
		{"GET", "/v2/models", 404, `{"error":"no such endpoint: GET /v2/models"}` + "\n"},
		{"GET", "/v2/repository/index", 404, `{"error":"no such endpoint: GET /v2/repository/index"}` + "\n"},
	}
	for _, tt := range tests {
		if r := do(t, h, tt.method, tt.path, "", ""); r.status != tt.status || r.raw != tt.body {
			t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, r.status, r.raw, tt.status, tt.body)
		}
	}
	s.SetReady(false)
	for _, path := range []string{"/v2/health/ready", "/v2/models/trip_duration/ready"} {
		if r := do(t, h, "GET", path, "", ""); r.status != 400 || r.body["error"] != "server not ready" {
			t.Errorf("GET %s while draining = %d %s, want 400 (the protocol's 4xx for false)", path, r.status, r.raw)
		}
	}
	if r := do(t, h, "GET", "/v2/health/live", "", ""); r.status != 200 {
		t.Errorf("live while draining = %d", r.status)
	}
}
