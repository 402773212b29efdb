package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"

	"skl2go"
	"skl2go/internal/jsonwire"
)

// HeaderLength is the binary tensor data extension's header: the length of
// the JSON part of a body that continues with binary tensor data.
const HeaderLength = "Inference-Header-Content-Length"

// Request is a decoded inference request.
type Request struct {
	Batch *skl2go.Batch // the inputs, one column per model input

	id         *string
	parameters map[string]json.RawMessage
	outputs    []requestedOutput // in the order the response lists them
}

// requestedOutput is a model output to return, and whether as binary data.
type requestedOutput struct {
	index  int // in Metadata.Outputs
	binary bool
}

// CheckContentType accepts JSON, the binary extension's octet-stream, or
// no type (tritonclient sends none).
func CheckContentType(value string) error {
	if value == "" {
		return nil
	}
	mediaType, _, err := mime.ParseMediaType(value)
	if err != nil || (mediaType != "application/json" && mediaType != "application/octet-stream") {
		return skl2go.Errorf(skl2go.EUNSUPPORTED, "Content-Type must be application/json or application/octet-stream, got %s", skl2go.Quote(value))
	}
	return nil
}

// ParseHeaderLength reads the HeaderLength header's value for a body of
// bodyLen bytes: -1 when there is none (the body is all JSON).
func ParseHeaderLength(value string, bodyLen int) (int, error) {
	if value == "" {
		return -1, nil
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s must be a non-negative integer, got %s", HeaderLength, skl2go.Quote(value))
	}
	if n > bodyLen {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s is %d, but the body has only %d bytes", HeaderLength, n, bodyLen)
	}
	return n, nil
}

// DecodeRequest checks an inference request against the model and decodes
// its inputs into a batch. headerLen is the length of the JSON header when
// binary tensor data follows it, or -1 when the body is all JSON. Every
// error it returns is a client error. Nothing decoded refers to body,
// which the caller may reuse.
func DecodeRequest(body []byte, headerLen int, meta *skl2go.Metadata, maxRows int) (*Request, error) {
	header, tensors := body, []byte(nil)
	if headerLen >= 0 {
		header, tensors = body[:headerLen], body[headerLen:]
	}
	if len(bytes.TrimSpace(header)) == 0 {
		return nil, skl2go.Errorf(skl2go.EINVALID, `empty body: expected {"inputs": [...]}`)
	}
	top, err := jsonObject(header, "body")
	if err != nil {
		return nil, err
	}
	if err := onlyKeys(top, "body", "id", "model_name", "model_version", "parameters", "inputs", "outputs"); err != nil {
		return nil, err
	}
	if err := checkModel(top, meta); err != nil {
		return nil, err
	}
	req := &Request{}
	if raw, ok := top["id"]; ok {
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			return nil, skl2go.Errorf(skl2go.EINVALID, "id: expected a string, got %s", kindOf(raw))
		}
		req.id = &id
	}
	binaryOutput := false
	if raw, ok := top["parameters"]; ok {
		if req.parameters, err = parameters(raw, "parameters"); err != nil {
			return nil, err
		}
		if binaryOutput, err = boolParameter(req.parameters, "binary_data_output", "parameters"); err != nil {
			return nil, err
		}
	}
	raw, ok := top["inputs"]
	if !ok {
		return nil, skl2go.Errorf(skl2go.EINVALID, `missing field "inputs" (model %s has inputs: %s)`, meta.Name, meta.InputNames())
	}
	if req.Batch, err = decodeInputs(raw, tensors, headerLen >= 0, meta, maxRows); err != nil {
		return nil, err
	}
	if req.outputs, err = decodeOutputs(top["outputs"], meta, binaryOutput); err != nil {
		return nil, err
	}
	return req, nil
}

// checkModel accepts the model_name and model_version fields that clients
// such as KServe's SDK put in the request when they name the model (and
// version) that the URL chose, and refuses them when they name another.
func checkModel(top map[string]json.RawMessage, meta *skl2go.Metadata) error {
	if raw, ok := top["model_name"]; ok {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return skl2go.Errorf(skl2go.EINVALID, "model_name: expected a string, got %s", kindOf(raw))
		}
		if name != meta.Name {
			return skl2go.Errorf(skl2go.EINVALID, "model_name: %s contradicts the URL, which names model %s", skl2go.Quote(name), skl2go.Quote(meta.Name))
		}
	}
	if raw, ok := top["model_version"]; ok {
		var version string
		if err := json.Unmarshal(raw, &version); err != nil {
			return skl2go.Errorf(skl2go.EINVALID, "model_version: expected a string, got %s", kindOf(raw))
		}
		if version != strconv.Itoa(meta.Version) {
			return skl2go.Errorf(skl2go.EINVALID, "model_version: %s contradicts the URL, which is answered by version %d of %s (name a version in the URL: /versions/<v>/infer)",
				skl2go.Quote(version), meta.Version, skl2go.Quote(meta.Name))
		}
	}
	return nil
}

// binaryInput is an input whose data follows the JSON header.
type binaryInput struct {
	where string
	col   *skl2go.Column
	count int
	size  int
}

func decodeInputs(raw, tensors []byte, hasBinary bool, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, error) {
	var inputs []json.RawMessage
	if err := json.Unmarshal(raw, &inputs); err != nil || inputs == nil {
		return nil, skl2go.Errorf(skl2go.EINVALID, "inputs: expected an array of objects, got %s", kindOf(raw))
	}
	builder := NewBatchBuilder(meta, maxRows)
	var binaries []binaryInput
	for i, raw := range inputs {
		where := fmt.Sprintf("inputs[%d]", i)
		obj, err := jsonObject(raw, where)
		if err != nil {
			return nil, err
		}
		if err := onlyKeys(obj, where, "name", "shape", "datatype", "parameters", "data"); err != nil {
			return nil, err
		}
		name, err := stringField(obj, "name", where)
		if err != nil {
			return nil, err
		}
		index, where, err := builder.Input(where, name)
		if err != nil {
			return nil, err
		}
		datatype, err := stringField(obj, "datatype", where)
		if err != nil {
			return nil, err
		}
		if err := checkDatatype(datatype, meta.Inputs[index], where); err != nil {
			return nil, err // before the shape is read, so a wrong datatype is named first
		}
		shape, err := parseShape(obj["shape"], where)
		if err != nil {
			return nil, err
		}
		col, count, err := builder.Column(index, where, datatype, shape)
		if err != nil {
			return nil, err
		}

		var params map[string]json.RawMessage
		if raw, ok := obj["parameters"]; ok {
			if params, err = parameters(raw, where+".parameters"); err != nil {
				return nil, err
			}
			if _, ok := params["shared_memory_region"]; ok {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s: shared memory is not supported: send the data in the body", where)
			}
		}
		data, hasData := obj["data"]
		if sizeRaw, ok := params["binary_data_size"]; ok {
			size, err := strconv.ParseInt(string(sizeRaw), 10, 64)
			if err != nil || size < 0 {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s: parameters.binary_data_size must be a non-negative integer, got %s", where, sizeRaw)
			}
			if hasData {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s: has both data and parameters.binary_data_size: give one", where)
			}
			if !hasBinary {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s: parameters.binary_data_size needs the %s header, which gives the length of the JSON before the binary data", where, HeaderLength)
			}
			binaries = append(binaries, binaryInput{where: where, col: col, count: count, size: int(size)})
			continue
		}
		if !hasData {
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: missing field \"data\" (or parameters.binary_data_size with binary data)", where)
		}
		n, err := decodeTensorJSON(data, col, count, where+".data")
		if err != nil {
			return nil, err
		}
		if n != count {
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: data has %d elements, shape %s needs %d", where, n, formatShape(shape), count)
		}
	}
	batch, err := builder.Batch()
	if err != nil {
		return nil, err
	}
	offset := 0
	for _, b := range binaries {
		if b.size > len(tensors)-offset {
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: parameters.binary_data_size is %d, but only %d bytes of binary data are left", b.where, b.size, len(tensors)-offset)
		}
		if err := DecodeBinary(tensors[offset:offset+b.size], b.col, b.count, b.where); err != nil {
			return nil, err
		}
		offset += b.size
	}
	if offset != len(tensors) {
		return nil, skl2go.Errorf(skl2go.EINVALID, "%d bytes of binary data after the JSON header are not claimed by any input's parameters.binary_data_size", len(tensors)-offset)
	}
	return batch, nil
}

// parseShape reads an input's JSON shape: an array of non-negative
// integers (BatchBuilder.Column checks it against the model).
func parseShape(raw json.RawMessage, where string) ([]int64, error) {
	if raw == nil {
		return nil, skl2go.Errorf(skl2go.EINVALID, "%s: missing field \"shape\"", where)
	}
	var shape []int64
	if err := json.Unmarshal(raw, &shape); err != nil || shape == nil || slices.ContainsFunc(shape, func(d int64) bool { return d < 0 }) {
		return nil, skl2go.Errorf(skl2go.EINVALID, "%s: shape must be an array of non-negative integers, got %s", where, shorten(raw))
	}
	return shape, nil
}

func decodeOutputs(raw json.RawMessage, meta *skl2go.Metadata, binaryDefault bool) ([]requestedOutput, error) {
	var requested []json.RawMessage
	if raw != nil {
		if err := json.Unmarshal(raw, &requested); err != nil || requested == nil {
			return nil, skl2go.Errorf(skl2go.EINVALID, "outputs: expected an array of objects, got %s", kindOf(raw))
		}
	}
	if len(requested) == 0 { // all outputs
		out := make([]requestedOutput, len(meta.Outputs))
		for i := range out {
			out[i] = requestedOutput{index: i, binary: binaryDefault}
		}
		return out, nil
	}
	var out []requestedOutput
	for i, raw := range requested {
		where := fmt.Sprintf("outputs[%d]", i)
		obj, err := jsonObject(raw, where)
		if err != nil {
			return nil, err
		}
		if err := onlyKeys(obj, where, "name", "parameters"); err != nil {
			return nil, err
		}
		name, err := stringField(obj, "name", where)
		if err != nil {
			return nil, err
		}
		chosen := make([]int, len(out))
		for j, o := range out {
			chosen[j] = o.index
		}
		index, err := OutputIndex(meta, name, chosen, where)
		if err != nil {
			return nil, err
		}
		where = "output " + skl2go.Quote(name)
		o := requestedOutput{index: index, binary: binaryDefault}
		if raw, ok := obj["parameters"]; ok {
			params, err := parameters(raw, where+".parameters")
			if err != nil {
				return nil, err
			}
			for _, unsupported := range []string{"classification", "shared_memory_region"} {
				if _, ok := params[unsupported]; ok {
					return nil, skl2go.Errorf(skl2go.EINVALID, "%s: parameters.%s is not supported", where, unsupported)
				}
			}
			if _, ok := params["binary_data"]; ok {
				if o.binary, err = boolParameter(params, "binary_data", where+".parameters"); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// AppendResponse appends the response's JSON to buf, and returns it with
// the binary data of the outputs requested as binary (nil if none): a
// response with binary data sets HeaderLength to the JSON's length.
func AppendResponse(buf []byte, req *Request, meta *skl2go.Metadata, outputs []skl2go.Output) ([]byte, []byte, error) {
	buf = append(buf, `{"model_name":`...)
	buf = jsonwire.AppendString(buf, meta.Name)
	buf = append(buf, `,"model_version":"`...)
	buf = strconv.AppendInt(buf, int64(meta.Version), 10)
	buf = append(buf, '"')
	if req.id != nil {
		buf = append(buf, `,"id":`...)
		buf = jsonwire.AppendString(buf, *req.id)
	}
	if req.parameters != nil {
		params, err := json.Marshal(req.parameters)
		if err != nil {
			return nil, nil, err
		}
		buf = append(append(buf, `,"parameters":`...), params...)
	}
	buf = append(buf, `,"outputs":[`...)
	var tensors []byte
	for i, o := range req.outputs {
		out := &outputs[o.index]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"name":`...)
		buf = jsonwire.AppendString(buf, out.Name)
		buf = append(buf, `,"datatype":"`...)
		buf = append(buf, types[out.Type]...)
		buf = append(buf, `","shape":`...)
		buf = appendShape(buf, out.Shape)
		count := 1
		for _, d := range out.Shape {
			count *= int(d)
		}
		if o.binary {
			start := len(tensors)
			tensors = appendBinary(tensors, out, count)
			buf = append(buf, `,"parameters":{"binary_data_size":`...)
			buf = strconv.AppendInt(buf, int64(len(tensors)-start), 10)
			buf = append(buf, "}}"...)
			continue
		}
		buf = append(buf, `,"data":[`...)
		for j := 0; j < count; j++ {
			if j > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = jsonwire.AppendValue(buf, out, j); err != nil {
				return nil, nil, err
			}
		}
		buf = append(buf, "]}"...)
	}
	if tensors == nil && slices.ContainsFunc(req.outputs, func(o requestedOutput) bool { return o.binary }) {
		tensors = []byte{} // binary outputs with no elements still make a binary response
	}
	return append(buf, "]}"...), tensors, nil
}

// appendBinary appends count elements of out in the binary tensor encoding.
func appendBinary(buf []byte, out *skl2go.Output, count int) []byte {
	le := binary.LittleEndian
	for i := 0; i < count; i++ {
		switch out.Type {
		case skl2go.Float32:
			buf = le.AppendUint32(buf, math.Float32bits(out.Float32[i]))
		case skl2go.Float64:
			buf = le.AppendUint64(buf, math.Float64bits(out.Float64[i]))
		case skl2go.Int64:
			buf = le.AppendUint64(buf, uint64(out.Int64[i]))
		case skl2go.Int32:
			buf = le.AppendUint32(buf, uint32(out.Int32[i]))
		case skl2go.Bool:
			b := byte(0)
			if out.Bool[i] {
				b = 1
			}
			buf = append(buf, b)
		case skl2go.String:
			buf = le.AppendUint32(buf, uint32(len(out.String[i])))
			buf = append(buf, out.String[i]...)
		}
	}
	return buf
}

func appendShape(buf []byte, shape []int64) []byte {
	buf = append(buf, '[')
	for i, d := range shape {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, d, 10)
	}
	return append(buf, ']')
}

func formatShape(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// jsonObject parses raw as a JSON object; where names it in errors.
func jsonObject(raw []byte, where string) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	err := json.Unmarshal(raw, &obj)
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return nil, skl2go.Errorf(skl2go.EINVALID, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case err != nil || obj == nil:
		return nil, skl2go.Errorf(skl2go.EINVALID, "%s: expected an object, got %s", where, kindOf(raw))
	}
	return obj, nil
}

// onlyKeys refuses keys of obj that are not in allowed.
func onlyKeys(obj map[string]json.RawMessage, where string, allowed ...string) error {
	var unknown []string
	for key := range obj {
		if !slices.Contains(allowed, key) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return skl2go.Errorf(skl2go.EINVALID, "%s: unknown field %s (expected %s)", where, skl2go.Quote(unknown[0]), strings.Join(allowed, ", "))
	}
	return nil
}

// parameters parses a parameters object: its values are strings, numbers
// or booleans, as the protocol defines them.
func parameters(raw json.RawMessage, where string) (map[string]json.RawMessage, error) {
	params, err := jsonObject(raw, where)
	if err != nil {
		return nil, err
	}
	for key, value := range params {
		switch kindOf(value) {
		case "an object", "an array", "null":
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s.%s: expected a string, number or boolean, got %s", where, key, kindOf(value))
		}
	}
	return params, nil
}

// boolParameter reads an optional boolean parameter (false when absent).
func boolParameter(params map[string]json.RawMessage, key, where string) (bool, error) {
	raw, ok := params[key]
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, skl2go.Errorf(skl2go.EINVALID, "%s.%s: expected true or false, got %s", where, key, kindOf(raw))
	}
	return b, nil
}

// stringField reads a required string field of obj.
func stringField(obj map[string]json.RawMessage, key, where string) (string, error) {
	raw, ok := obj[key]
	if !ok {
		return "", skl2go.Errorf(skl2go.EINVALID, "%s: missing field %q", where, key)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", skl2go.Errorf(skl2go.EINVALID, "%s.%s: expected a string, got %s", where, key, kindOf(raw))
	}
	return s, nil
}

// kindOf names the JSON type of a raw value, for error messages.
func kindOf(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// shorten shows raw JSON in an error, shortened.
func shorten(raw []byte) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	if s == "" {
		return "nothing"
	}
	return s
}

// SetParameter sets a parameter of the answer (a JSON value), beside the
// ones the request gave, which the answer echoes.
func (r *Request) SetParameter(key string, value string) {
	if r.parameters == nil {
		r.parameters = make(map[string]json.RawMessage)
	}
	r.parameters[key] = json.RawMessage(value)
}
