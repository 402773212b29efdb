package grpc

import (
	"fmt"
	"strconv"

	"skl2go"
	"skl2go/grpc/inferencepb"
	"skl2go/oip"
)

// Request is a decoded ModelInferRequest.
type Request struct {
	Batch   *skl2go.Batch
	Outputs []int // the model outputs to answer, by index, in order
	Raw     bool  // the inputs came as raw_input_contents: answer raw_output_contents
}

// DecodeRequest checks a ModelInferRequest's tensors against the model, as
// the REST V2 API checks its own (package oip's rules), and decodes its
// inputs into a batch. Every error it returns is a client error naming the
// field.
func DecodeRequest(req *inferencepb.ModelInferRequest, meta *skl2go.Metadata, maxRows int) (*Request, error) {
	inputs, raw := req.GetInputs(), req.GetRawInputContents()
	d := &Request{Raw: len(raw) > 0}
	if d.Raw && len(raw) != len(inputs) {
		return nil, skl2go.Errorf(skl2go.EINVALID, "raw_input_contents: %d entries for %d inputs: give one per input, in the order of inputs", len(raw), len(inputs))
	}
	if len(inputs) == 0 {
		return nil, skl2go.Errorf(skl2go.EINVALID, "inputs: none given (model %s has inputs: %s)", meta.Name, meta.InputNames())
	}
	if err := checkParameters(req.GetParameters(), "parameters"); err != nil {
		return nil, err
	}
	builder := oip.NewBatchBuilder(meta, maxRows)
	for i, in := range inputs {
		where := fmt.Sprintf("inputs[%d]", i)
		index, named, err := builder.Input(where, in.GetName())
		if err != nil {
			return nil, err
		}
		if err := checkParameters(in.GetParameters(), named+".parameters"); err != nil {
			return nil, err
		}
		col, count, err := builder.Column(index, named, in.GetDatatype(), in.GetShape())
		if err != nil {
			return nil, err
		}
		if d.Raw {
			if given := contentFields(in.GetContents()); len(given) > 0 {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s: has contents.%s and raw_input_contents[%d]: give one", named, given[0], i)
			}
			err = oip.DecodeBinary(raw[i], col, count, named)
		} else {
			err = decodeContents(in.GetContents(), col, count, named)
		}
		if err != nil {
			return nil, err
		}
	}
	batch, err := builder.Batch()
	if err != nil {
		return nil, err
	}
	d.Batch = batch
	for i, o := range req.GetOutputs() {
		where := fmt.Sprintf("outputs[%d]", i)
		index, err := oip.OutputIndex(meta, o.GetName(), d.Outputs, where)
		if err != nil {
			return nil, err
		}
		params := o.GetParameters()
		for _, unsupported := range []string{"classification", "shared_memory_region"} {
			if _, ok := params[unsupported]; ok {
				return nil, skl2go.Errorf(skl2go.EINVALID, "output %s: parameters.%s is not supported", skl2go.Quote(o.GetName()), unsupported)
			}
		}
		d.Outputs = append(d.Outputs, index)
	}
	if len(d.Outputs) == 0 {
		for i := range meta.Outputs {
			d.Outputs = append(d.Outputs, i)
		}
	}
	return d, nil
}

// checkParameters refuses the parameters skl2go does not support.
func checkParameters(params map[string]*inferencepb.InferParameter, where string) error {
	if _, ok := params["shared_memory_region"]; ok {
		return skl2go.Errorf(skl2go.EINVALID, "%s.shared_memory_region: shared memory is not supported: send the data in the request", where)
	}
	return nil
}

// contentsField names the contents field that holds elements of each type.
var contentsField = map[skl2go.DataType]string{
	skl2go.Bool:    "bool_contents",
	skl2go.Int32:   "int_contents",
	skl2go.Int64:   "int64_contents",
	skl2go.Float32: "fp32_contents",
	skl2go.Float64: "fp64_contents",
	skl2go.String:  "bytes_contents",
}

// contentFields lists the fields of c that hold elements.
func contentFields(c *inferencepb.InferTensorContents) []string {
	var given []string
	for _, f := range []struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.GetBoolContents())},
		{"int_contents", len(c.GetIntContents())},
		{"int64_contents", len(c.GetInt64Contents())},
		{"uint_contents", len(c.GetUintContents())},
		{"uint64_contents", len(c.GetUint64Contents())},
		{"fp32_contents", len(c.GetFp32Contents())},
		{"fp64_contents", len(c.GetFp64Contents())},
		{"bytes_contents", len(c.GetBytesContents())},
	} {
		if f.n > 0 {
			given = append(given, f.name)
		}
	}
	return given
}

// decodeContents appends an input's typed contents to its column: the
// elements must be in the field of the input's datatype, and no other.
func decodeContents(c *inferencepb.InferTensorContents, col *skl2go.Column, count int, where string) error {
	want := contentsField[col.Type]
	for _, field := range contentFields(c) {
		if field != want {
			return skl2go.Errorf(skl2go.EINVALID, "%s: contents.%s does not match datatype %s, whose elements go in contents.%s",
				where, field, oip.Datatype(col.Type), want)
		}
	}
	if c == nil {
		return skl2go.Errorf(skl2go.EINVALID, "%s: no data: give contents.%s or raw_input_contents", where, want)
	}
	return oip.DecodeContents(&oip.Contents{Bool: c.BoolContents, Int32: c.IntContents, Int64: c.Int64Contents,
		Float32: c.Fp32Contents, Float64: c.Fp64Contents, Bytes: c.BytesContents}, col, count, where+".contents."+want)
}

// EncodeResponse answers a decoded request with the model's outputs: typed
// contents, or raw_output_contents when the request's inputs were raw.
func EncodeResponse(req *inferencepb.ModelInferRequest, d *Request, meta *skl2go.Metadata, outputs []skl2go.Output) *inferencepb.ModelInferResponse {
	resp := &inferencepb.ModelInferResponse{ModelName: meta.Name, ModelVersion: strconv.Itoa(meta.Version), Id: req.GetId()}
	for _, index := range d.Outputs {
		out := &outputs[index]
		t := &inferencepb.ModelInferResponse_InferOutputTensor{Name: out.Name, Datatype: oip.Datatype(out.Type), Shape: out.Shape}
		if d.Raw {
			resp.RawOutputContents = append(resp.RawOutputContents, oip.AppendBinary(nil, out))
		} else {
			t.Contents = contents(out)
		}
		resp.Outputs = append(resp.Outputs, t)
	}
	return resp
}

// contents holds an output's elements in the field of its type.
func contents(out *skl2go.Output) *inferencepb.InferTensorContents {
	n := oip.Elements(out.Shape)
	c := &inferencepb.InferTensorContents{}
	switch out.Type {
	case skl2go.Float32:
		c.Fp32Contents = out.Float32[:n]
	case skl2go.Float64:
		c.Fp64Contents = out.Float64[:n]
	case skl2go.Int64:
		c.Int64Contents = out.Int64[:n]
	case skl2go.Int32:
		c.IntContents = out.Int32[:n]
	case skl2go.Bool:
		c.BoolContents = out.Bool[:n]
	case skl2go.String:
		c.BytesContents = make([][]byte, n)
		for i, s := range out.String[:n] {
			c.BytesContents[i] = []byte(s)
		}
	}
	return c
}
