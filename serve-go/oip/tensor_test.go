package oip

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"

	"skl2go"
)

func TestDecodeTensorJSON(t *testing.T) {
	tests := []struct {
		name, data string
		typ        skl2go.DataType
		limit      int
		want       skl2go.Values
		err        string
	}{
		{"flat floats", `[1, 2.5, -3e2]`, skl2go.Float32, 3, skl2go.Values{Float32: []float32{1, 2.5, -300}}, ""},
		{"nested ints", `[[74], [75.0], [-9007199254740993]]`, skl2go.Int64, 3, skl2go.Values{Int64: []int64{74, 75, -9007199254740993}}, ""},
		{"ragged nesting is read row-major", `[[1, [2]], 3]`, skl2go.Int32, 3, skl2go.Values{Int32: []int32{1, 2, 3}}, ""},
		{"doubles", `[0.1]`, skl2go.Float64, 1, skl2go.Values{Float64: []float64{0.1}}, ""},
		{"strings", `["VTS", ""]`, skl2go.String, 2, skl2go.Values{String: []string{"VTS", ""}}, ""},
		{"bools", `[true, false]`, skl2go.Bool, 2, skl2go.Values{Bool: []bool{true, false}}, ""},
		{"empty", `[]`, skl2go.Float32, 3, skl2go.Values{}, ""},
		{"not an array", `5`, skl2go.Float32, 1, skl2go.Values{}, "x.data: expected an array, got number 5"},
		{"string for number", `[1, "2"]`, skl2go.Float32, 2, skl2go.Values{}, `x.data: element 1: expected a number, got string "2"`},
		{"fraction for integer", `[[1], [2.5]]`, skl2go.Int64, 2, skl2go.Values{}, "x.data: element 1: expected an integer, got 2.5"},
		{"int32 range", `[2147483648]`, skl2go.Int32, 1, skl2go.Values{}, "element 0: 2147483648 is out of range for int32"},
		{"float32 range", `[1e39]`, skl2go.Float32, 1, skl2go.Values{}, "element 0: 1e39 is out of range for float32"},
		{"null", `[null]`, skl2go.Float64, 1, skl2go.Values{}, "element 0: must not be null"},
		{"object", `[{"a": 1}]`, skl2go.Float64, 1, skl2go.Values{}, "element 0: expected a number, got an object"},
		{"number for bool", `[1]`, skl2go.Bool, 1, skl2go.Values{}, "element 0: expected true or false, got number 1"},
		{"more than the limit", `[1, 2, 3]`, skl2go.Float32, 2, skl2go.Values{}, "x.data: more than 2 elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col := skl2go.Column{Name: "x", Type: tt.typ}
			n, err := decodeTensorJSON([]byte(tt.data), &col, tt.limit, "x.data")
			if tt.err != "" {
				if err == nil || !strings.Contains(skl2go.ErrorMessage(err), tt.err) || skl2go.ErrorCode(err) != skl2go.EINVALID {
					t.Fatalf("error = %v, want EINVALID containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(col.Values, tt.want) || n != count(tt.want) {
				t.Errorf("decoded %d: %+v, want %+v", n, col.Values, tt.want)
			}
		})
	}
}

func count(v skl2go.Values) int {
	return len(v.Float32) + len(v.Float64) + len(v.Int64) + len(v.Int32) + len(v.String) + len(v.Bool)
}

func TestDecodeTensorBinary(t *testing.T) {
	le := binary.LittleEndian
	f32 := func(fs ...float32) (b []byte) {
		for _, f := range fs {
			b = le.AppendUint32(b, math.Float32bits(f))
		}
		return b
	}
	f64 := func(fs ...float64) (b []byte) {
		for _, f := range fs {
			b = le.AppendUint64(b, math.Float64bits(f))
		}
		return b
	}
	strs := func(ss ...string) (b []byte) {
		for _, s := range ss {
			b = append(le.AppendUint32(b, uint32(len(s))), s...)
		}
		return b
	}
	tests := []struct {
		name  string
		typ   skl2go.DataType
		raw   []byte
		count int
		want  skl2go.Values
		err   string
	}{
		{"float32", skl2go.Float32, f32(2.5, -1), 2, skl2go.Values{Float32: []float32{2.5, -1}}, ""},
		{"float64", skl2go.Float64, f64(0.1), 1, skl2go.Values{Float64: []float64{0.1}}, ""},
		{"int64", skl2go.Int64, le.AppendUint64(le.AppendUint64(nil, 74), uint64(math.MaxUint64)), 2, skl2go.Values{Int64: []int64{74, -1}}, ""},
		{"int32", skl2go.Int32, le.AppendUint32(nil, 0xffffff00), 1, skl2go.Values{Int32: []int32{-256}}, ""},
		{"bool", skl2go.Bool, []byte{1, 0}, 2, skl2go.Values{Bool: []bool{true, false}}, ""},
		{"strings", skl2go.String, strs("VTS", "", "zoné"), 3, skl2go.Values{String: []string{"VTS", "", "zoné"}}, ""},
		{"too few bytes", skl2go.Float32, f32(1)[:3], 1, skl2go.Values{}, "3 bytes of binary data, but 1 elements of 4 bytes need 4"},
		{"too many bytes", skl2go.Int64, make([]byte, 24), 2, skl2go.Values{}, "24 bytes of binary data, but 2 elements of 8 bytes need 16"},
		{"NaN", skl2go.Float32, f32(1, float32(math.NaN())), 2, skl2go.Values{}, "element 1 is NaN: only finite numbers are accepted"},
		{"infinity", skl2go.Float64, f64(math.Inf(-1)), 1, skl2go.Values{}, "element 0 is -Inf"},
		{"bool byte", skl2go.Bool, []byte{1, 2}, 2, skl2go.Values{}, "element 1: byte 2 is not a boolean (0 or 1)"},
		{"string cut in its length", skl2go.String, []byte{3, 0}, 1, skl2go.Values{}, "element 0: binary data ends at byte 2, before the element's 4-byte length"},
		{"string past the end", skl2go.String, strs("abc")[:5], 1, skl2go.Values{}, "element 0: length 3 runs past the end of the binary data (1 bytes left)"},
		{"string extra bytes", skl2go.String, strs("a", "b"), 1, skl2go.Values{}, "5 bytes of binary data after the 1 elements"},
		{"invalid UTF-8", skl2go.String, strs("\xff"), 1, skl2go.Values{}, "element 0: not valid UTF-8"},
		{"NUL byte", skl2go.String, strs("a\x00b"), 1, skl2go.Values{}, "element 0: contains a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col := skl2go.Column{Name: "x", Type: tt.typ}
			err := decodeTensorBinary(tt.raw, &col, tt.count)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(col.Values, tt.want) {
				t.Errorf("decoded %+v, want %+v", col.Values, tt.want)
			}
		})
	}
}

// Both V2 encodings refuse values outside the input's declared range, as
// the v1 instances decoder does.
func TestDecodeTensorRefusesValuesOutsideTheRange(t *testing.T) {
	spec := skl2go.TensorSpec{Name: "trip_distance", Type: skl2go.Float32, Shape: []int64{-1, 1}, Range: []float64{0, 1000}}
	col := spec.NewColumn()
	if _, err := decodeTensorJSON([]byte(`[[0], [1000], [2.5]]`), &col, 3, "x.data"); err != nil {
		t.Fatalf("values within the range: %v", err)
	}
	col = spec.NewColumn()
	_, err := decodeTensorJSON([]byte(`[[0], [1e6]]`), &col, 2, "x.data")
	if want := "x.data: element 1: 1e6 is out of range: the model accepts 0 to 1000"; skl2go.ErrorMessage(err) != want {
		t.Errorf("JSON: error = %v, want %q", err, want)
	}
	raw := binary.LittleEndian.AppendUint32(nil, math.Float32bits(2.5))
	raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(-1))
	col = spec.NewColumn()
	err = decodeTensorBinary(raw, &col, 2)
	if want := "element 1: -1 is out of range: the model accepts 0 to 1000"; err == nil || err.Error() != want {
		t.Errorf("binary: error = %v, want %q", err, want)
	}
}
