// Package wiretest holds what the tests of the domain and of the wire
// protocol packages (tfserving, oip) share: models with an input of every
// type, and the check that an error is one the client is told about.
package wiretest

import (
	"errors"
	"testing"

	"skl2go"
)

// Model has an input of every type the server decodes, one with a range.
const Model = `{"name": "fuzz", "version": 1, "task": "regression",
 "inputs": [
  {"name": "zone", "type": "tensor(int64)", "shape": [-1, 1]},
  {"name": "distance", "type": "tensor(float)", "shape": [-1, 1], "range": [0, 1000]},
  {"name": "fare", "type": "tensor(double)", "shape": [-1, 1]},
  {"name": "count", "type": "tensor(int32)", "shape": [-1, 1]},
  {"name": "flag", "type": "tensor(string)", "shape": [-1, 1]},
  {"name": "paid", "type": "tensor(bool)", "shape": [-1, 1]}],
 "outputs": [{"name": "variable", "type": "tensor(float)", "shape": [-1, 1]}],
 "files": {"onnx": {"path": "model.onnx"}}}`

// Row is a valid instance of Model.
const Row = `{"zone": 74, "distance": 2.5, "fare": 12.5, "count": 1, "flag": "N", "paid": true}`

// Trips is a trip-duration model with an input of every type, one with a
// range, for the decoders' table tests.
const Trips = `{
  "name": "trips", "version": 3, "task": "regression",
  "inputs": [
    {"name": "zone", "type": "tensor(int64)", "shape": [-1, 1]},
    {"name": "distance", "type": "tensor(float)", "shape": [-1, 1], "range": [0, 1000]},
    {"name": "fare", "type": "tensor(double)", "shape": [-1, 1]},
    {"name": "vendor", "type": "tensor(string)", "shape": [-1, 1]},
    {"name": "hour", "type": "tensor(int32)", "shape": [-1, 1]},
    {"name": "night", "type": "tensor(bool)", "shape": [-1, 1]}
  ],
  "outputs": [{"name": "variable", "type": "tensor(float)", "shape": [-1, 1]}],
  "files": {"onnx": {"path": "model.onnx"}}
}`

// Metadata parses Model.
func Metadata(t testing.TB) *skl2go.Metadata { return Parse(t, Model) }

// Parse parses a model.json document, failing the test if it is refused.
func Parse(t testing.TB, doc string) *skl2go.Metadata {
	t.Helper()
	meta, err := skl2go.ParseMetadata([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return meta
}

// clientCodes are the error codes the HTTP package answers with a 4xx.
var clientCodes = map[string]bool{
	skl2go.EINVALID: true, skl2go.ENOTFOUND: true, skl2go.ETOOLARGE: true, skl2go.ETIMEOUT: true, skl2go.EUNSUPPORTED: true,
}

// CheckClientError fails the test unless err is a client error: an
// *skl2go.Error whose code is answered with a 4xx status, with a message.
func CheckClientError(t *testing.T, err error) {
	t.Helper()
	var e *skl2go.Error
	if !errors.As(err, &e) {
		t.Fatalf("%T %v is not a *skl2go.Error: it would answer 500", err, err)
	}
	if !clientCodes[e.Code] {
		t.Fatalf("code %q for bad input, want one answered with a 4xx: %v", e.Code, err)
	}
	if e.Message == "" {
		t.Fatalf("code %q without a message", e.Code)
	}
}
