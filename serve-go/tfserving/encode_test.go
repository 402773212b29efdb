package tfserving_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"skl2go"
	"skl2go/tfserving"
)

// Names are written as encoding/json writes them, whatever their characters.
func TestAppendPredictionsWritesJSONForAnyName(t *testing.T) {
	for _, name := range []string{"trip_duration", "label", `say "hi"`, `back\slash`, "<tag>&", "tab\there", "café", "\u2028"} {
		outputs := []skl2go.Output{
			{Name: name, Type: skl2go.Float32, Shape: []int64{2, 1}, Values: skl2go.Values{Float32: []float32{1.5, -2}}},
			{Name: "n", Type: skl2go.Int64, Shape: []int64{2}, Values: skl2go.Values{Int64: []int64{7, 8}}},
		}
		body, err := tfserving.AppendPredictions(nil, outputs, 2, name, 3)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%q: not JSON: %s", name, body)
		}
		want := map[string]any{"model": name, "version": 3.0, "predictions": []any{
			map[string]any{name: 1.5, "n": 7.0}, map[string]any{name: -2.0, "n": 8.0}}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %v", name, got)
		}
	}
}
