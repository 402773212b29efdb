package tfserving

import (
	"encoding/json"
	"strings"
	"testing"

	"skl2go"
	"skl2go/internal/wiretest"
)

const testMetadata = wiretest.Trips

func testMeta(t testing.TB) *skl2go.Metadata { return wiretest.Parse(t, testMetadata) }

func decode(t testing.TB, instances string, maxRows int) (*skl2go.Batch, error) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(instances))
	dec.UseNumber()
	return DecodeInstances(dec, testMeta(t), maxRows)
}

const goodRow = `{"zone": 74, "distance": 2.5, "fare": 12.25, "vendor": "VTS", "hour": 8, "night": false}`

func TestDecodeInstancesTypes(t *testing.T) {
	rows := `[` + goodRow + `, {"night": true, "hour": 23.0, "vendor": "", "fare": -1e2, "distance": 0, "zone": -9007199254740993}]`
	b, err := decode(t, rows, 10)
	if err != nil {
		t.Fatal(err)
	}
	if b.Rows != 2 {
		t.Fatalf("rows = %d, want 2", b.Rows)
	}
	c := b.Columns
	if got := c[0].Int64; got[0] != 74 || got[1] != -9007199254740993 {
		t.Errorf("zone = %v", got)
	}
	if got := c[1].Float32; got[0] != 2.5 || got[1] != 0 {
		t.Errorf("distance = %v", got)
	}
	if got := c[2].Float64; got[0] != 12.25 || got[1] != -100 {
		t.Errorf("fare = %v", got)
	}
	if got := c[3].String; got[0] != "VTS" || got[1] != "" {
		t.Errorf("vendor = %q", got)
	}
	if got := c[4].Int32; got[0] != 8 || got[1] != 23 {
		t.Errorf("hour = %v", got)
	}
	if got := c[5].Bool; got[0] || !got[1] {
		t.Errorf("night = %v", got)
	}
}

func TestDecodeInstancesRefusesBadInput(t *testing.T) {
	row := func(field, value string) string { // goodRow with one field replaced
		var m map[string]json.RawMessage
		json.Unmarshal([]byte(goodRow), &m)
		if value == "" {
			delete(m, field)
		} else {
			m[field] = json.RawMessage(value)
		}
		b, _ := json.Marshal(m)
		return "[" + string(b) + "]"
	}
	tests := []struct {
		name      string
		instances string
		maxRows   int
		code      string
		message   string
	}{
		{"not an array", `{"zone": 1}`, 10, skl2go.EINVALID, "instances: expected an array of objects, got an object"},
		{"empty", `[]`, 10, skl2go.EINVALID, "instances: must contain at least one instance"},
		{"row not an object", `[1]`, 10, skl2go.EINVALID, "instances[0]: expected an object, got number 1"},
		{"missing field", row("distance", ""), 10, skl2go.EINVALID, "instances[0].distance: missing"},
		{"unknown field", `[{"zone": 1, "colour": "red"}]`, 10, skl2go.EINVALID,
			"instances[0].colour: unknown field (model trips expects zone, distance, fare, vendor, hour, night)"},
		{"duplicate field", `[{"zone": 1, "zone": 2}]`, 10, skl2go.EINVALID, "instances[0].zone: given twice"},
		{"null", row("distance", "null"), 10, skl2go.EINVALID, "instances[0].distance: must not be null"},
		{"number as string", row("distance", `"3.2"`), 10, skl2go.EINVALID, `instances[0].distance: expected a number, got string "3.2"`},
		{"string as number", row("vendor", `7`), 10, skl2go.EINVALID, "instances[0].vendor: expected a string, got number 7"},
		{"fraction for integer", row("zone", "74.5"), 10, skl2go.EINVALID, "instances[0].zone: expected an integer, got 74.5"},
		{"int64 overflow", row("zone", "9223372036854775808"), 10, skl2go.EINVALID, "instances[0].zone: 9223372036854775808 is out of range for int64"},
		{"int64 overflow as float", row("zone", "1e19"), 10, skl2go.EINVALID, "instances[0].zone: 1e19 is out of range for int64"},
		{"int32 overflow", row("hour", "2147483648"), 10, skl2go.EINVALID, "instances[0].hour: 2147483648 is out of range for int32"},
		{"float32 overflow", row("distance", "1e39"), 10, skl2go.EINVALID, "instances[0].distance: 1e39 is out of range for float32"},
		{"above the range", row("distance", "1000.5"), 10, skl2go.EINVALID, "instances[0].distance: 1000.5 is out of range: the model accepts 0 to 1000"},
		{"far above the range", row("distance", "3e38"), 10, skl2go.EINVALID, "instances[0].distance: 3e38 is out of range: the model accepts 0 to 1000"},
		{"below the range", row("distance", "-0.01"), 10, skl2go.EINVALID, "instances[0].distance: -0.01 is out of range: the model accepts 0 to 1000"},
		{"Infinity is not JSON", `[{"distance": Infinity}]`, 10, skl2go.EINVALID, "instances[0].distance: malformed JSON at byte 11: invalid character 'I' looking for beginning of value (NaN and Infinity"},
		{"bool as number", row("distance", "true"), 10, skl2go.EINVALID, "instances[0].distance: expected a number, got true"},
		{"number as bool", row("night", "0"), 10, skl2go.EINVALID, "instances[0].night: expected true or false, got number 0"},
		{"array value", row("zone", "[1]"), 10, skl2go.EINVALID, "instances[0].zone: expected an integer, got an array"},
		{"object value", row("zone", `{"a": 1}`), 10, skl2go.EINVALID, "instances[0].zone: expected an integer, got an object"},
		{"NaN is not JSON", `[{"zone": NaN}]`, 10, skl2go.EINVALID,
			"instances[0].zone: malformed JSON at byte 7: invalid character 'N' looking for beginning of value (NaN and Infinity are not JSON numbers: send a finite number)"},
		{"-Infinity is not JSON", `[{"zone": 1, "distance": -Infinity}]`, 10, skl2go.EINVALID, "instances[0].distance: malformed JSON at byte 19: invalid character 'I' in numeric literal (NaN and Infinity"},
		{"other bad value syntax names the field", `[{"zone": 1, "distance": 2.5e}]`, 10, skl2go.EINVALID, "instances[0].distance: malformed JSON at byte 22: invalid character '}' in exponent of numeric literal"},
		{"truncated", `[{"zone": 1`, 10, skl2go.EINVALID, "malformed JSON"},
		{"too many rows", "[" + goodRow + "," + goodRow + "," + goodRow + "]", 2, skl2go.ETOOLARGE, "too many instances: at most 2 per request"},
		{"second row named", "[" + goodRow + `, {"zone": "x"}]`, 10, skl2go.EINVALID, `instances[1].zone: expected an integer, got string "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(t, tt.instances, tt.maxRows)
			if err == nil {
				t.Fatal("decoded; want an error")
			}
			if code := skl2go.ErrorCode(err); code != tt.code {
				t.Errorf("code = %q, want %q (%v)", code, tt.code, err)
			}
			if msg := skl2go.ErrorMessage(err); !strings.Contains(msg, tt.message) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.message)
			}
		})
	}
}
