package skl2go_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"skl2go"
)

// nullableMetadata has a nullable double (tip), a nullable float (fare) and
// a double that is not nullable (distance).
const nullableMetadata = `{
  "name": "imputed", "version": 1, "task": "regression",
  "inputs": [
    {"name": "tip", "type": "tensor(double)", "shape": [-1, 1], "nullable": true},
    {"name": "fare", "type": "tensor(float)", "shape": [-1, 1], "nullable": true, "range": [0, 100]},
    {"name": "distance", "type": "tensor(double)", "shape": [-1, 1]}
  ],
  "outputs": [{"name": "variable", "type": "tensor(double)", "shape": [-1, 1]}],
  "files": {"onnx": {"path": "model.onnx"}}
}`

func TestNullableInputsTakeNullAsNaN(t *testing.T) {
	meta, err := skl2go.ParseMetadata([]byte(nullableMetadata))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"instances": [{"tip": null, "fare": null, "distance": 1.5}, {"tip": 2.5, "fare": 7, "distance": 3}]}`
	for name, decode := range map[string]func() (*skl2go.Batch, error){
		"decoder": func() (*skl2go.Batch, error) { return slowDecode(meta, body, 10) },
		"fast path": func() (*skl2go.Batch, error) {
			if b, ok := meta.ScanRequest([]byte(body), 10); ok {
				return b, nil
			}
			t.Fatal("the fast path did not take nulls of nullable inputs")
			return nil, nil
		},
	} {
		b, err := decode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tip, fare := b.Columns[0].Float64, b.Columns[1].Float32
		if !math.IsNaN(tip[0]) || tip[1] != 2.5 || !math.IsNaN(float64(fare[0])) || fare[1] != 7 {
			t.Errorf("%s: tip %v, fare %v; want [NaN 2.5], [NaN 7]", name, tip, fare)
		}
	}
	agree(t, meta, body, 10)
}

func TestNullStaysRefusedWhereTheInputIsNotNullable(t *testing.T) {
	meta, err := skl2go.ParseMetadata([]byte(nullableMetadata))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"instances": [{"tip": 1, "fare": 1, "distance": null}]}`
	if _, ok := meta.ScanRequest([]byte(body), 10); ok {
		t.Error("the fast path took a null for a field that is not nullable")
	}
	_, err = slowDecode(meta, body, 10)
	want := "instances[0].distance: must not be null"
	if skl2go.ErrorMessage(err) != want || skl2go.ErrorCode(err) != skl2go.EINVALID {
		t.Errorf("error = %v, want %s %q", err, skl2go.EINVALID, want)
	}
}

func TestNullableTensors(t *testing.T) {
	tests := []struct {
		name     string
		nullable bool
		json     string
		binary   float64
		want     string // "" = accepted as NaN
	}{
		{"nullable", true, `[[null], [1.5]]`, math.NaN(), ""},
		{"not nullable", false, `[[null], [1.5]]`, math.NaN(), "must not be null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := skl2go.TensorSpec{Name: "tip", Type: skl2go.Float64, Shape: []int64{-1, 1}, Nullable: tt.nullable}
			col := spec.NewColumn()
			_, err := skl2go.DecodeTensorJSON([]byte(tt.json), &col, 2, "x.data")
			checkNull(t, "JSON", err, col.Float64, tt.want)
			col = spec.NewColumn()
			raw := binary.LittleEndian.AppendUint64(nil, math.Float64bits(tt.binary))
			raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(1.5))
			err = skl2go.DecodeTensorBinary(raw, &col, 2)
			want := tt.want
			if want != "" {
				want = "only finite numbers are accepted"
			}
			checkNull(t, "binary", err, col.Float64, want)
		})
	}
}

func checkNull(t *testing.T, encoding string, err error, got []float64, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v", encoding, err)
	case want == "" && (len(got) != 2 || !math.IsNaN(got[0]) || got[1] != 1.5):
		t.Errorf("%s: decoded %v, want [NaN 1.5]", encoding, got)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: error = %v, want it to contain %q", encoding, err, want)
	}
}

func TestOnlyFloatInputsCanBeNullable(t *testing.T) {
	doc := strings.Replace(testMetadata, `{"name": "zone", "type": "tensor(int64)", "shape": [-1, 1]}`,
		`{"name": "zone", "type": "tensor(int64)", "shape": [-1, 1], "nullable": true}`, 1)
	_, err := skl2go.ParseMetadata([]byte(doc))
	if want := `input "zone": only float inputs can be nullable`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}
