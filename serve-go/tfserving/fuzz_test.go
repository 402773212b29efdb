package tfserving_test

import (
	"testing"

	"skl2go/internal/wiretest"
	"skl2go/tfserving"
)

// FuzzDecodeRequest feeds arbitrary bodies, rows or columns, to the v1
// predict decoder, cut short at arbitrary lengths (as a client that stops
// sending) and under arbitrary row limits. Invariants: no panic; every error is a client error
// (4xx); a decoded batch has Rows values in every column, and at most the
// row limit. Seeds: testdata/fuzz/FuzzDecodeRequest and below.
// Run: go test ./tfserving -run '^$' -fuzz FuzzDecodeRequest -fuzztime 60s
func FuzzDecodeRequest(f *testing.F) {
	meta := wiretest.Metadata(f)
	row := wiretest.Row
	for _, body := range []string{
		`{"instances": [` + row + `]}`,
		`{"instances": [` + row + `, ` + row + `]}`,
		`{"instances": []}`, `{}`, `[]`, ``, `null`, `{"instances": [{}]}`,
		`{"instances": [{"zone": 1e400}]}`, `{"instances": [{"zone": 7.5}]}`, `{"instances": [{"distance": -1}]}`,
		`{"instances": [{"zone": "74"}]}`, `{"instances": [{"zone": 74, "zone": 75}]}`, `{"instances": [[1, 2]]}`,
		`{"instances": [` + row + `]} trailing`, `{"instances": [` + row[:30],
		"{\"instances\": [{\"flag\": \"\xff\xfe\"}]}", `{"instances": [{"paid": 1}]}`,
		// The columnar form, and both forms at once.
		`{"inputs": {"zone": [74, 75], "distance": [2.5, 0], "fare": [12.5, 1e2], "count": [1, 2], "flag": ["N", "Y"], "paid": [true, false]}}`,
		`{"inputs": {"zone": [74], "distance": [2.5, 3], "fare": [1], "count": [1], "flag": ["N"], "paid": [true]}}`,
		`{"inputs": {"zone": [], "distance": [], "fare": [], "count": [], "flag": [], "paid": []}}`,
		`{"inputs": {"zone": 74}}`, `{"inputs": [74]}`, `{"inputs": {"zone": [[74]]}}`, `{"inputs": {}}`,
		`{"instances": [` + row + `], "inputs": {"zone": [74]}}`,
	} {
		f.Add([]byte(body), uint16(1024), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, limit uint16, maxRows uint8) {
		if len(body) > int(limit)+1 {
			body = body[:int(limit)+1]
		}
		req, err := tfserving.DecodeRequest(body, meta, int(maxRows)+1)
		if err != nil {
			wiretest.CheckClientError(t, err)
			return
		}
		batch := req.Batch
		if batch.Rows < 1 || batch.Rows > int(maxRows)+1 || len(batch.Columns) != len(meta.Inputs) {
			t.Fatalf("batch of %d rows and %d columns (row limit %d)", batch.Rows, len(batch.Columns), int(maxRows)+1)
		}
		for _, col := range batch.Columns {
			n := len(col.Float32) + len(col.Float64) + len(col.Int64) + len(col.Int32) + len(col.String) + len(col.Bool)
			if n != batch.Rows {
				t.Fatalf("column %s has %d values for %d rows", col.Name, n, batch.Rows)
			}
		}
	})
}
