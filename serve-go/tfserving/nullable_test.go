package tfserving

import (
	"math"
	"testing"

	"skl2go"
)

const nullableMetadata = `{
  "name": "imputed", "version": 1, "task": "regression",
  "inputs": [
    {"name": "tip", "type": "tensor(double)", "shape": [-1, 1], "nullable": true},
    {"name": "distance", "type": "tensor(double)", "shape": [-1, 1]}
  ],
  "outputs": [{"name": "variable", "type": "tensor(double)", "shape": [-1, 1]}],
  "files": {"onnx": {"path": "model.onnx"}}
}`

// The fast scanner and the token decoder both take null as NaN for a
// nullable input, and both leave null refused elsewhere.
func TestNullableInputs(t *testing.T) {
	meta, err := skl2go.ParseMetadata([]byte(nullableMetadata))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"instances": [{"tip": null, "distance": 1.5}, {"tip": 2.5, "distance": 3}]}`
	fast, ok := scanRequest([]byte(body), meta, 10)
	if !ok {
		t.Fatal("the fast path did not take nulls of a nullable input")
	}
	req, err := DecodeRequest([]byte(" "+body), meta, 10) // a leading space: the same through either path
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*skl2go.Batch{"scanner": fast, "decoder": req.Batch} {
		if tip := b.Columns[0].Float64; !math.IsNaN(tip[0]) || tip[1] != 2.5 {
			t.Errorf("%s: tip %v, want [NaN 2.5]", name, tip)
		}
	}
	refused := `{"instances": [{"tip": 1, "distance": null}]}`
	if _, ok := scanRequest([]byte(refused), meta, 10); ok {
		t.Error("the fast path took null for an input that is not nullable")
	}
	_, err = DecodeRequest([]byte(refused), meta, 10)
	if want := "instances[0].distance: must not be null"; skl2go.ErrorMessage(err) != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}
