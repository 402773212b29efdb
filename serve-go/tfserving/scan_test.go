package tfserving

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"skl2go"
)

// slowDecode is the reference: the token decoder on {"instances": [...]}.
func slowDecode(meta *skl2go.Metadata, body string, maxRows int) (*skl2go.Batch, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	for _, want := range []any{json.Delim('{'), "instances"} {
		if tok, err := dec.Token(); err != nil || tok != want {
			return nil, fmt.Errorf("not {\"instances\": …}: %v %v", tok, err)
		}
	}
	batch, err := DecodeInstances(dec, meta, maxRows)
	if err != nil {
		return nil, err
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("no closing brace: %v %v", tok, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the object")
	}
	return batch, nil
}

// agree fails if scanRequest accepts a body the reference refuses, or
// decodes it differently. It reports whether the fast path took it.
func agree(t *testing.T, meta *skl2go.Metadata, body string, maxRows int) bool {
	t.Helper()
	fast, ok := scanRequest([]byte(body), meta, maxRows)
	if !ok {
		return false
	}
	slow, err := slowDecode(meta, body, maxRows)
	if err != nil {
		t.Fatalf("the fast path accepted a body the decoder refuses (%v):\n%s", err, body)
	}
	if !reflect.DeepEqual(comparable(fast), comparable(slow)) {
		t.Fatalf("the two paths decoded differently:\nfast %+v\nslow %+v\nbody %s", fast, slow, body)
	}
	return true
}

// comparable drops capacities and nil-vs-empty differences.
func comparable(b *skl2go.Batch) []string {
	out := []string{fmt.Sprint(b.Rows)}
	for _, c := range b.Columns {
		out = append(out, fmt.Sprintf("%s %s %v %v %v %v %q %v", c.Name, c.Type,
			c.Float32, c.Float64, c.Int64, c.Int32, c.String, c.Bool))
	}
	return out
}

func TestScanRequestTakesWellFormedBodies(t *testing.T) {
	meta := testMeta(t)
	rows := strings.Repeat(goodRow+",", 99) + goodRow
	for _, body := range []string{
		`{"instances": [` + goodRow + `]}`,
		`{"instances":[` + rows + `]}`,
		" \n\t{ \"instances\" : [ " + goodRow + " ] } \r\n",
		`{"instances": [{"night": true, "hour": 23.0, "vendor": "", "fare": -1e2, "distance": 0, "zone": -9007199254740993}]}`,
		`{"instances": [{"zone": 7.4e1, "distance": 1E-3, "fare": -0.0, "vendor": "a b~", "hour": -0, "night": false}]}`,
		`{"instances": [{"zone": 9223372036854775807, "distance": 1000, "fare": 1e308, "vendor": "x", "hour": 2147483647, "night": true}]}`,
	} {
		if !agree(t, meta, body, 1000) {
			t.Errorf("not taken by the fast path: %s", body)
		}
	}
}

func TestScanRequestLeavesEverythingElseToTheDecoder(t *testing.T) {
	meta := testMeta(t)
	row := func(field, value string) string { // goodRow with one field's value replaced
		var m map[string]json.RawMessage
		json.Unmarshal([]byte(goodRow), &m)
		m[field] = json.RawMessage(value)
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, body := range []string{
		``, `{}`, `[]`, `{"instances": []}`, `{"instances": {}}`, `{"instances": [1]}`,
		`{"instances": [` + goodRow + `]} x`, `{"instances": [` + goodRow + `], "instances": []}`,
		`{"instances": [` + goodRow + `], "other": 1}`, `{"instances": [` + goodRow + `,]}`,
		`{"instances": [` + goodRow + `]`, `{"instances": [` + goodRow, `{"\u0069nstances": [` + goodRow + `]}`,
		`{"instances": [{"zone": 74}]}`, `{"instances": [{"zone": 1, "zone": 2}]}`,
		`{"instances": [` + strings.Replace(goodRow, `}`, `, "colour": 1}`, 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, `"night": false`, `"night": false,`, 1) + `]}`,
		`{"instances": [` + row("zone", "74.5") + `]}`, `{"instances": [` + row("zone", "9223372036854775808") + `]}`,
		`{"instances": [` + row("zone", "1e19") + `]}`, `{"instances": [` + row("hour", "2147483648") + `]}`,
		`{"instances": [` + row("distance", "1e39") + `]}`, `{"instances": [` + row("fare", "1e400") + `]}`,
		`{"instances": [` + row("distance", "1000.5") + `]}`, `{"instances": [` + row("distance", "-0.001") + `]}`, // outside its range
		`{"instances": [` + row("distance", `"3.2"`) + `]}`, `{"instances": [` + row("distance", "null") + `]}`,
		`{"instances": [` + row("distance", "true") + `]}`, `{"instances": [` + row("night", "0") + `]}`,
		`{"instances": [` + row("zone", "[1]") + `]}`, `{"instances": [` + row("zone", `{"a": 1}`) + `]}`,
		`{"instances": [` + row("vendor", `"caf\u00e9"`) + `]}`, `{"instances": [` + row("vendor", `"café"`) + `]}`,
		`{"instances": [` + row("vendor", "7") + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "74", "074", 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "74", "+74", 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "2.5", "2.", 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "2.5", ".5", 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "2.5", "2.5e", 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "2.5", "NaN", 1) + `]}`,
		`{"instances": [` + strings.Replace(goodRow, "false", "fals", 1) + `]}`,
		`{"instances": [` + goodRow + "," + goodRow + "," + goodRow + `]}`, // over maxRows = 2
	} {
		if agree(t, meta, body, 2) {
			t.Errorf("the fast path took a body it should leave to the decoder: %s", body)
		}
	}
}

func TestScanRequestAllocatesPerColumnNotPerValue(t *testing.T) {
	meta := testMeta(t)
	body := []byte(`{"instances": [` + strings.Repeat(goodRow+",", 999) + goodRow + `]}`)
	allocs := testing.AllocsPerRun(20, func() {
		if _, ok := scanRequest(body, meta, 1000); !ok {
			t.Fatal("not taken")
		}
	})
	// One string per row of the string column, and a few per column (the
	// race detector adds some): not one per number, as the token decoder.
	if limit := 1000.0 + 50; allocs > limit {
		t.Errorf("%.0f allocations for 1,000 rows, want at most %.0f", allocs, limit)
	}
}

// FuzzScanRequest: whatever the bytes, the fast path never accepts what the
// decoder refuses and never decodes differently. `go test` runs the seeds;
// `go test -run '^$' -fuzz FuzzScanRequest -fuzztime 60s ./tfserving` explores.
func FuzzScanRequest(f *testing.F) {
	f.Add(`{"instances": [` + goodRow + `]}`)
	f.Add(`{"instances":[{"zone":1,"distance":2,"fare":3,"vendor":"v","hour":4,"night":true},` + goodRow + `]}`)
	f.Add(`{"instances": [{"zone": 7.4e1, "distance": -0, "fare": 1E+2, "vendor": "", "hour": 0, "night": false}]}`)
	f.Add(`{"instances": [{"zone": 74.5, "distance": 1e39, "fare": null, "vendor": 1, "hour": "x", "night": 0}]}`)
	meta := testMeta(f)
	f.Fuzz(func(t *testing.T, body string) {
		agree(t, meta, body, 3)
	})
}

// The decode stage both ways, on the same 1 and 1,000 rows:
// go test ./tfserving -run '^$' -bench Decode -benchmem
func BenchmarkDecode(b *testing.B) {
	meta := testMeta(b)
	for _, rows := range []int{1, 1000} {
		body := `{"instances": [` + strings.Repeat(goodRow+",", rows-1) + goodRow + `]}`
		b.Run(fmt.Sprintf("tokens/rows=%d", rows), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := slowDecode(meta, body, rows); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("scan/rows=%d", rows), func(b *testing.B) {
			data := []byte(body)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, ok := scanRequest(data, meta, rows); !ok {
					b.Fatal("not taken")
				}
			}
		})
	}
}
