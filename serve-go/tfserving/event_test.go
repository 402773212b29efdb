package tfserving

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"skl2go"
)

const goodEvent = `{"ride_id": "r-1", "zone": 74, "distance": 2.5, "fare": 12.25, "vendor": "VTS", "hour": 8, "night": false}`

func TestDecodeEventAppendsOneRowAndReadsTheIdAndTime(t *testing.T) {
	meta := testMeta(t)
	batch := meta.NewBatch(2)
	ev, err := DecodeEvent([]byte(goodEvent), meta, batch)
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.ID) != `"r-1"` || !ev.Time.IsZero() {
		t.Errorf("event = %s %v, want \"r-1\" and no time", ev.ID, ev.Time)
	}
	second := strings.Replace(goodEvent, `"ride_id": "r-1"`, `"event_time": "2026-12-01T08:00:00.5Z", "ride_id": 42`, 1)
	second = strings.Replace(second, `"zone": 74`, `"zone": 75`, 1)
	if ev, err = DecodeEvent([]byte(second), meta, batch); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 1, 8, 0, 0, 5e8, time.UTC); string(ev.ID) != "42" || !ev.Time.Equal(want) {
		t.Errorf("event = %s %v, want 42 at %v", ev.ID, ev.Time, want)
	}
	if batch.Rows != 2 || batch.Columns[0].Int64[0] != 74 || batch.Columns[0].Int64[1] != 75 {
		t.Errorf("batch = %d rows, zones %v", batch.Rows, batch.Columns[0].Int64)
	}
}

// A refused event says what is wrong with which field, as the HTTP API
// does for an instance, and leaves the batch exactly as it was: the next
// event's values line up with the rows before it.
func TestDecodeEventRefusesWithTheMessagesOfInstances(t *testing.T) {
	cases := []struct {
		name, event, want string
	}{
		{"not JSON", `{"ride_id": "r-1", "zone": 7`, "malformed JSON"},
		{"not an object", `[1, 2]`, "event: expected an object, got an array"},
		{"bytes after", goodEvent + ` {}`, "data after the event"},
		{"missing id", strings.Replace(goodEvent, `"ride_id": "r-1", `, "", 1), "event.ride_id: missing"},
		{"empty id", strings.Replace(goodEvent, `"r-1"`, `""`, 1), "event.ride_id: must not be empty"},
		{"object id", strings.Replace(goodEvent, `"r-1"`, `{}`, 1), "event.ride_id: expected a string or an integer, got an object"},
		{"fractional id", strings.Replace(goodEvent, `"r-1"`, `1.5`, 1), "event.ride_id: expected an integer, got 1.5"},
		{"id twice", strings.Replace(goodEvent, `"zone"`, `"ride_id": 2, "zone"`, 1), "event.ride_id: given twice"},
		{"missing input", strings.Replace(goodEvent, `"hour": 8, `, "", 1), "event.hour: missing"},
		{"unknown field", strings.Replace(goodEvent, `"night"`, `"nite": 1, "night"`, 1), "event.nite: unknown field (model trips expects ride_id, zone"},
		{"wrong type", strings.Replace(goodEvent, `"zone": 74`, `"zone": "74"`, 1), `event.zone: expected an integer, got string "74"`},
		{"null", strings.Replace(goodEvent, `"zone": 74`, `"zone": null`, 1), "event.zone: must not be null"},
		{"out of range", strings.Replace(goodEvent, `"distance": 2.5`, `"distance": 2000`, 1), "event.distance: 2000 is out of range: the model accepts 0 to 1000"},
		{"NaN", strings.Replace(goodEvent, `"distance": 2.5`, `"distance": NaN`, 1), "NaN and Infinity are not JSON numbers"},
		{"bad time", strings.Replace(goodEvent, `"ride_id"`, `"event_time": "yesterday", "ride_id"`, 1), `event.event_time: "yesterday" is not an RFC 3339 time`},
		{"time as number", strings.Replace(goodEvent, `"ride_id"`, `"event_time": 17, "ride_id"`, 1), "event.event_time: expected an RFC 3339 time string"},
	}
	meta := testMeta(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			batch := meta.NewBatch(2)
			if _, err := DecodeEvent([]byte(goodEvent), meta, batch); err != nil {
				t.Fatal(err)
			}
			_, err := DecodeEvent([]byte(tc.event), meta, batch)
			if skl2go.ErrorCode(err) != skl2go.EINVALID || !strings.Contains(skl2go.ErrorMessage(err), tc.want) {
				t.Fatalf("err = %v, want an invalid error containing %q", err, tc.want)
			}
			if batch.Rows != 1 {
				t.Fatalf("rows = %d after a refused event, want 1", batch.Rows)
			}
			for _, c := range batch.Columns {
				if n := len(c.Float32) + len(c.Float64) + len(c.Int64) + len(c.Int32) + len(c.String) + len(c.Bool); n != 1 {
					t.Errorf("column %s holds %d values after a refused event, want 1", c.Name, n)
				}
			}
			next := strings.Replace(goodEvent, `"zone": 74`, `"zone": 99`, 1)
			if _, err := DecodeEvent([]byte(next), meta, batch); err != nil || batch.Columns[0].Int64[1] != 99 {
				t.Fatalf("the next event: err %v, zones %v", err, batch.Columns[0].Int64)
			}
		})
	}
}

// The same input refused as an instance and as an event gets the same
// message, but for where it is.
func TestDecodeEventMessageMatchesDecodeInstances(t *testing.T) {
	meta := testMeta(t)
	row := strings.Replace(goodRow, `"distance": 2.5`, `"distance": -1`, 1)
	_, instErr := decode(t, "["+row+"]", 10)
	_, evErr := DecodeEvent(bytes.Replace([]byte(row), []byte("{"), []byte(`{"ride_id": 1, `), 1), meta, meta.NewBatch(1))
	got := strings.TrimPrefix(skl2go.ErrorMessage(evErr), "event.")
	want := strings.TrimPrefix(skl2go.ErrorMessage(instErr), "instances[0].")
	if got != want || got == "" {
		t.Errorf("event message %q, instance message %q", got, want)
	}
}

// The fast path (plain events) and the token decoder (what it leaves, such
// as escaped keys) read an event alike.
func TestDecodeEventFastAndSlowPathsAgree(t *testing.T) {
	meta := testMeta(t)
	batch := meta.NewBatch(2)
	plain, err := DecodeEvent([]byte(goodEvent), meta, batch)
	if err != nil {
		t.Fatal(err)
	}
	escaped := strings.Replace(goodEvent, `"zone"`, `"zon\u0065"`, 1)
	escaped = strings.Replace(escaped, `"ride_id"`, `"ride\u005fid"`, 1)
	slow, err := DecodeEvent([]byte(escaped), meta, batch)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain.ID) != string(slow.ID) || batch.Rows != 2 {
		t.Fatalf("ids %s and %s, %d rows", plain.ID, slow.ID, batch.Rows)
	}
	for _, c := range batch.Columns {
		a, b := c.Values.Slice(c.Type, 0, 1), c.Values.Slice(c.Type, 1, 2)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("column %s: %v by the fast path, %v by the decoder", c.Name, a, b)
		}
	}
}
