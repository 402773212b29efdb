package skl2go_test

import (
	"math"
	"strings"
	"testing"

	"skl2go"
)

func TestNullableColumnTakesNullAsNaN(t *testing.T) {
	tests := []struct {
		spec skl2go.TensorSpec
		want string // "" = NaN appended
	}{
		{skl2go.TensorSpec{Name: "tip", Type: skl2go.Float64, Nullable: true}, ""},
		{skl2go.TensorSpec{Name: "fare", Type: skl2go.Float32, Nullable: true}, ""},
		{skl2go.TensorSpec{Name: "distance", Type: skl2go.Float64}, "must not be null"},
	}
	for _, tt := range tests {
		col := tt.spec.NewColumn()
		err := col.AppendJSON(nil)
		switch {
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%s: error %v, want %q", tt.spec.Name, err, tt.want)
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.spec.Name, err)
		case tt.want == "" && tt.spec.Type == skl2go.Float64 && !math.IsNaN(col.Float64[0]),
			tt.want == "" && tt.spec.Type == skl2go.Float32 && !math.IsNaN(float64(col.Float32[0])):
			t.Errorf("%s: decoded %v %v, want NaN", tt.spec.Name, col.Float64, col.Float32)
		}
	}
}

func TestOnlyFloatInputsCanBeNullable(t *testing.T) {
	doc := `{"name": "m", "version": 1, "task": "regression",
	  "inputs": [{"name": "zone", "type": "tensor(int64)", "shape": [-1, 1], "nullable": true}],
	  "outputs": [{"name": "variable", "type": "tensor(float)", "shape": [-1, 1]}],
	  "files": {"onnx": {"path": "model.onnx"}}}`
	_, err := skl2go.ParseMetadata([]byte(doc))
	if want := `input "zone": only float inputs can be nullable`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}
