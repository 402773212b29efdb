package oip

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"skl2go"
)

// V2 JSON null and binary NaN are missing values for a nullable input only.
func TestNullableTensors(t *testing.T) {
	for _, nullable := range []bool{true, false} {
		spec := skl2go.TensorSpec{Name: "tip", Type: skl2go.Float64, Shape: []int64{-1, 1}, Nullable: nullable}
		col := spec.NewColumn()
		_, errJSON := decodeTensorJSON([]byte(`[[null], [1.5]]`), &col, 2, "x.data")
		raw := binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.NaN()))
		raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(1.5))
		bin := spec.NewColumn()
		errBinary := decodeTensorBinary(raw, &bin, 2)
		if nullable {
			if errJSON != nil || errBinary != nil || !math.IsNaN(col.Float64[0]) || !math.IsNaN(bin.Float64[0]) {
				t.Errorf("nullable: JSON %v %v, binary %v %v; want NaN, no error", col.Float64, errJSON, bin.Float64, errBinary)
			}
			continue
		}
		if errJSON == nil || !strings.Contains(errJSON.Error(), "must not be null") {
			t.Errorf("not nullable: JSON error %v", errJSON)
		}
		if errBinary == nil || !strings.Contains(errBinary.Error(), "only finite numbers") {
			t.Errorf("not nullable: binary error %v", errBinary)
		}
	}
}
