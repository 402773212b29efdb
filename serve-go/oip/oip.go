// Package oip is the Open Inference Protocol (KServe V2) REST wire format,
// as Triton and KServe speak it: inference requests decoded into a batch for
// a model and the model's outputs encoded as the answer, with JSON tensor
// data or Triton's binary tensor data extension (which tritonclient uses by
// default), and the metadata documents of the server and its models.
//
// The HTTP transport (paths, status codes, reading bodies) is package
// http's. The tensor rules (batch.go: names, datatypes, shapes, element
// checks, the binary encoding) are shared with package grpc, the
// protocol's gRPC transport.
package oip

import (
	"strconv"

	"skl2go"
)

// Extensions are the protocol extensions the server metadata announces.
var Extensions = []string{"binary_tensor_data"}

// Platform is the protocol's name for ONNX models run by ONNX Runtime.
const Platform = "onnx_onnxv1"

// types maps model tensor types to the protocol's datatypes.
var types = map[skl2go.DataType]string{
	skl2go.Bool:    "BOOL",
	skl2go.Int32:   "INT32",
	skl2go.Int64:   "INT64",
	skl2go.Float32: "FP32",
	skl2go.Float64: "FP64",
	skl2go.String:  "BYTES",
}

// knownTypes lists every datatype of the protocol, so that a datatype no
// model input has is told apart from a misspelt one.
var knownTypes = map[string]bool{
	"BOOL": true, "UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true,
	"FP16": true, "BF16": true, "FP32": true, "FP64": true, "BYTES": true,
}

// ServerMetadata is the server metadata document (GET /v2). Its fields are
// in the order the answer has always listed them.
type ServerMetadata struct {
	Extensions []string `json:"extensions"`
	Name       string   `json:"name"`
	Version    string   `json:"version"`
}

// ModelMetadata is a model's metadata document (GET /v2/models/<name>).
// Its fields are in the order the answer has always listed them.
type ModelMetadata struct {
	Inputs   []Tensor `json:"inputs"`
	Name     string   `json:"name"`
	Outputs  []Tensor `json:"outputs"`
	Platform string   `json:"platform"`
	Versions []string `json:"versions"`
}

// Tensor is a tensor's description in model metadata.
type Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// NewModelMetadata describes a model of which versions are served.
func NewModelMetadata(meta *skl2go.Metadata, versions []int) ModelMetadata {
	served := make([]string, len(versions))
	for i, v := range versions {
		served[i] = strconv.Itoa(v)
	}
	return ModelMetadata{Inputs: tensors(meta.Inputs), Name: meta.Name, Outputs: tensors(meta.Outputs), Platform: Platform, Versions: served}
}

func tensors(specs []skl2go.TensorSpec) []Tensor {
	out := make([]Tensor, len(specs))
	for i, t := range specs {
		out[i] = Tensor{Name: t.Name, Datatype: types[t.Type], Shape: t.Shape}
	}
	return out
}

// The health documents: GET /v2/health/live, /v2/health/ready and
// /v2/models/<name>[/versions/<v>]/ready answer them with 200. The protocol
// tells true from false by the status code alone (Triton sends no body,
// tritonclient reads only the status); KServe documents these bodies and
// its Python SDK reads them.
type (
	// Live is the body of a live server's answer.
	Live struct {
		Live bool `json:"live"`
	}
	// Ready is the body of a ready server's answer.
	Ready struct {
		Ready bool `json:"ready"`
	}
	// ModelReady is the body of a ready model's answer.
	ModelReady struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	}
)
