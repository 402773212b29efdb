package tfserving

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"skl2go"
)

// The columnar form decodes to the batch the row form gives for the same
// rows, and is answered in columns.
func TestColumnsDecodeAsTheRowsDo(t *testing.T) {
	meta := testMeta(t)
	rows := `{"instances": [` + goodRow + `, {"night": true, "hour": 23.0, "vendor": "", "fare": -1e2, "distance": 0, "zone": -9007199254740993}]}`
	columns := `{"inputs": {"zone": [74, -9007199254740993], "distance": [2.5, 0], "fare": [12.25, -1e2],
		"vendor": ["VTS", ""], "hour": [8, 23.0], "night": [false, true]}}`
	byRows, err := DecodeRequest([]byte(rows), meta, 10)
	if err != nil || byRows.Columnar {
		t.Fatalf("rows: %+v %v", byRows, err)
	}
	byColumns, err := DecodeRequest([]byte(columns), meta, 10)
	if err != nil || !byColumns.Columnar {
		t.Fatalf("columns: %+v %v", byColumns, err)
	}
	if !reflect.DeepEqual(comparable(byRows.Batch), comparable(byColumns.Batch)) {
		t.Errorf("columns decode to\n%v\nrows to\n%v", comparable(byColumns.Batch), comparable(byRows.Batch))
	}
}

func TestColumnsRefusedNamingTheInputAndRow(t *testing.T) {
	meta := testMeta(t)
	good := map[string]string{"zone": "[74, 75]", "distance": "[2.5, 3]", "fare": "[1, 2]", "vendor": `["a", "b"]`, "hour": "[1, 2]", "night": "[true, false]"}
	columns := func(edit func(map[string]string)) string {
		c := map[string]string{}
		for k, v := range good {
			c[k] = v
		}
		edit(c)
		var parts []string
		for _, in := range meta.Inputs { // the model's order, then any other
			if v, ok := c[in.Name]; ok {
				parts = append(parts, `"`+in.Name+`": `+v)
				delete(c, in.Name)
			}
		}
		for k, v := range c {
			parts = append(parts, `"`+k+`": `+v)
		}
		return `{"inputs": {` + strings.Join(parts, ", ") + `}}`
	}
	tests := []struct {
		name, body string
		maxRows    int
		code       string
		message    string
	}{
		{"both forms", `{"instances": [` + goodRow + `], "inputs": {}}`, 10, skl2go.EINVALID,
			`the body has both "instances" and "inputs": send rows or columns, not both`},
		{"both forms, columns first", `{"inputs": ` + strings.TrimPrefix(strings.TrimSuffix(columns(func(map[string]string) {}), "}"), `{"inputs": `) + `, "instances": []}`, 10, skl2go.EINVALID,
			`the body has both "instances" and "inputs"`},
		{"inputs twice", strings.TrimSuffix(columns(func(map[string]string) {}), "}") + `, "inputs": {}}`, 10, skl2go.EINVALID, `"inputs" given twice`},
		{"not an object", `{"inputs": [[74, 2.5]]}`, 10, skl2go.EINVALID, `inputs: expected an object of columns {"input": [one value per row], …}, got an array`},
		{"column not an array", columns(func(c map[string]string) { c["zone"] = "74" }), 10, skl2go.EINVALID,
			"inputs.zone: expected an array with one value per row, got number 74"},
		{"nested value", columns(func(c map[string]string) { c["zone"] = "[[74], [75]]" }), 10, skl2go.EINVALID,
			"inputs.zone[0]: expected an integer, got an array"},
		{"bad value names the row", columns(func(c map[string]string) { c["distance"] = `[2.5, "3"]` }), 10, skl2go.EINVALID,
			`inputs.distance[1]: expected a number, got string "3"`},
		{"out of range", columns(func(c map[string]string) { c["distance"] = `[2.5, 1e6]` }), 10, skl2go.EINVALID,
			`inputs.distance[1]: 1e6 is out of range: the model accepts 0 to 1000`},
		{"NaN", columns(func(c map[string]string) { c["fare"] = `[1, NaN]` }), 10, skl2go.EINVALID,
			"inputs.fare[1]: malformed JSON at byte"},
		{"lengths differ", columns(func(c map[string]string) { c["distance"] = "[2.5]" }), 10, skl2go.EINVALID,
			"inputs.distance: 1 values, but inputs.zone has 2: every input has one value per row"},
		{"no values", columns(func(c map[string]string) { c["zone"] = "[]" }), 10, skl2go.EINVALID, "inputs.zone: no values: send one per row"},
		{"missing input", columns(func(c map[string]string) { delete(c, "night") }), 10, skl2go.EINVALID,
			"inputs.night: missing (model trips expects zone, distance, fare, vendor, hour, night)"},
		{"unknown input", columns(func(c map[string]string) { c["colour"] = `["red", "blue"]` }), 10, skl2go.EINVALID,
			"inputs.colour: unknown input (model trips expects zone, distance, fare, vendor, hour, night)"},
		{"input twice", `{"inputs": {"zone": [1], "zone": [2]}}`, 10, skl2go.EINVALID, "inputs.zone: given twice"},
		{"too many rows", columns(func(map[string]string) {}), 1, skl2go.ETOOLARGE, "too many rows: at most 1 per request"},
		{"other key", `{"columns": {}}`, 10, skl2go.EINVALID, `unknown field "columns" in the body: expected "instances" (rows) or "inputs" (columns)`},
		{"neither", `{}`, 10, skl2go.EINVALID, `missing field "instances" (rows; or "inputs", columns)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(tt.body), meta, tt.maxRows)
			if code := skl2go.ErrorCode(err); code != tt.code {
				t.Errorf("code = %q, want %q (%v)", code, tt.code, err)
			}
			if msg := skl2go.ErrorMessage(err); !strings.Contains(msg, tt.message) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.message)
			}
		})
	}
	if _, err := DecodeRequest([]byte(columns(func(map[string]string) {})), meta, 2); err != nil {
		t.Errorf("the good columns: %v", err)
	}
}

// A classifier's columns: {"label": [...], "probabilities": [[...], ...]};
// a regressor's: its values.
func TestAppendOutputs(t *testing.T) {
	tips := []skl2go.Output{
		{Name: "label", Type: skl2go.Int64, Shape: []int64{2}, Values: skl2go.Values{Int64: []int64{1, 0}}},
		{Name: "probabilities", Type: skl2go.Float32, Shape: []int64{2, 2}, Values: skl2go.Values{Float32: []float32{0.25, 0.75, 0.875, 0.125}}},
	}
	durations := []skl2go.Output{{Name: "variable", Type: skl2go.Float32, Shape: []int64{2, 1}, Values: skl2go.Values{Float32: []float32{12.5, 0.25}}}}
	for _, tt := range []struct {
		outputs []skl2go.Output
		want    string
	}{
		{tips, `{"outputs":{"label":[1,0],"probabilities":[[0.25,0.75],[0.875,0.125]]},"model":"m","version":3}`},
		{durations, `{"outputs":[12.5,0.25],"model":"m","version":3}`},
	} {
		got, err := AppendResponse(nil, Request{Batch: &skl2go.Batch{Rows: 2}, Columnar: true}, tt.outputs, "m", 3)
		if err != nil || string(got) != tt.want || !json.Valid(got) {
			t.Errorf("got %s (%v), want %s", got, err, tt.want)
		}
	}
}
