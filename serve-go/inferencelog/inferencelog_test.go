package inferencelog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"skl2go"
	"skl2go/inferencelog"
)

// clock is a settable clock for file names and ages.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func regression(id string) *skl2go.InferenceRecord {
	return &skl2go.InferenceRecord{
		Type: skl2go.InferenceEventType, Time: time.Date(2026, 12, 6, 12, 0, 0, 123456789, time.UTC),
		RequestID: id, Model: "trip_duration", Version: 3, Latency: 1500 * time.Microsecond, Task: skl2go.Regression,
		Inputs: []skl2go.Column{
			{Name: "PULocationID", Type: skl2go.Int64, Values: skl2go.Values{Int64: []int64{74, 99}}},
			{Name: "trip_distance", Type: skl2go.Float32, Nullable: true, Values: skl2go.Values{Float32: []float32{2.5, float32(nan())}}},
			{Name: "store", Type: skl2go.String, Values: skl2go.Values{String: []string{"N", "Y"}}},
		},
		Outputs: []skl2go.Output{{Name: "variable", Type: skl2go.Float32, Shape: []int64{2, 1},
			Values: skl2go.Values{Float32: []float32{21.5, 11.25}}}},
	}
}

func nan() float64 { var z float64; return z / z }

func classifier(id string) *skl2go.InferenceRecord {
	rec := regression(id)
	rec.Task, rec.Variant, rec.Type = skl2go.Classification, "challenger", skl2go.ShadowEventType
	rec.Outputs = []skl2go.Output{
		{Name: skl2go.LabelOutput, Type: skl2go.Int64, Shape: []int64{2}, Values: skl2go.Values{Int64: []int64{1, 0}}},
		{Name: skl2go.ProbabilitiesOutput, Type: skl2go.Float32, Shape: []int64{2, 2}, Values: skl2go.Values{Float32: []float32{0.25, 0.75, 0.5, 0.5}}},
	}
	return rec
}

// readAll returns every record in dir's files, oldest file first, and the files.
func readAll(t *testing.T, dir string) ([]map[string]any, []string) {
	t.Helper()
	files, err := inferencelog.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("%s: not JSON: %q", f, sc.Text())
			}
			recs = append(recs, rec)
		}
		fh.Close()
	}
	return recs, files
}

func closeSink(t *testing.T, s *inferencelog.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRecordsAreCloudEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "replica-1")
	s, err := inferencelog.Open(inferencelog.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Log(context.Background(), regression("req-1"))
	s.Log(context.Background(), classifier("req-2"))
	s.Log(context.Background(), &skl2go.InferenceRecord{Type: skl2go.ActualEventType, Time: time.Now(), Model: "trip_duration",
		Actuals: []skl2go.Actual{{RequestID: "req-1", Row: 1, Value: 12.5}, {Key: "trip-9", Value: 3}}})
	closeSink(t, s)
	recs, files := readAll(t, dir)
	if len(files) != 1 || len(recs) != 4 {
		t.Fatalf("%d files, %d records; want 1 and 4", len(files), len(recs))
	}
	ids := map[any]bool{}
	for _, rec := range recs {
		for _, attr := range []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data"} {
			if _, ok := rec[attr]; !ok {
				t.Errorf("record without %s: %v", attr, rec)
			}
		}
		if rec["specversion"] != "1.0" || rec["source"] != "skl2go/replica-1" || rec["datacontenttype"] != "application/json" {
			t.Errorf("attributes: %v", rec)
		}
		ids[rec["id"]] = true
	}
	if len(ids) != 4 {
		t.Errorf("ids are not unique: %v", ids)
	}
	tests := []struct {
		name string
		got  any
		want string
	}{
		{"regression", recs[0], `{"type":"org.skl2go.inference","time":"2026-12-06T12:00:00.123456789Z","requestid":"req-1","model":"trip_duration","version":3,"latencyms":1.5,
			"data":{"inputs":{"PULocationID":[74,99],"trip_distance":[2.5,null],"store":["N","Y"]},"outputs":{"predictions":[21.5,11.25]}}}`},
		{"classifier, shadow", recs[1], `{"type":"org.skl2go.inference.shadow","time":"2026-12-06T12:00:00.123456789Z","requestid":"req-2","model":"trip_duration","version":3,"variant":"challenger","latencyms":1.5,
			"data":{"inputs":{"PULocationID":[74,99],"trip_distance":[2.5,null],"store":["N","Y"]},"outputs":{"predictions":[1,0],"probabilities":[[0.25,0.75],[0.5,0.5]]}}}`},
		{"actual by request id", recs[2], `{"type":"org.skl2go.actual","requestid":"req-1","model":"trip_duration","data":{"requestid":"req-1","key":null,"row":1,"actual":12.5}}`},
		{"actual by key", recs[3], `{"type":"org.skl2go.actual","model":"trip_duration","data":{"requestid":null,"key":"trip-9","row":0,"actual":3}}`},
	}
	for _, tt := range tests {
		var want map[string]any
		if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
			t.Fatal(err)
		}
		rec := tt.got.(map[string]any)
		for k, v := range want {
			if g, _ := json.Marshal(rec[k]); string(g) != mustJSON(v) {
				t.Errorf("%s: %s = %s, want %s", tt.name, k, g, mustJSON(v))
			}
		}
		for _, absent := range []string{"variant", "version", "requestid"} {
			if _, in := want[absent]; !in {
				if _, got := rec[absent]; got {
					t.Errorf("%s: %s should be omitted, got %v", tt.name, absent, rec[absent])
				}
			}
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestRotationAndRetention(t *testing.T) {
	line := func(t *testing.T) int { // the size of one regression record's line
		dir := t.TempDir()
		s, _ := inferencelog.Open(inferencelog.Options{Dir: dir})
		s.Log(context.Background(), regression("req-0000"))
		closeSink(t, s)
		files, _ := inferencelog.Files(dir)
		fi, _ := os.Stat(files[0])
		return int(fi.Size())
	}(t)
	tests := []struct {
		name      string
		opts      inferencelog.Options
		records   int
		step      time.Duration // the clock moves this much after each record
		wantFiles int
		wantLines int // records left in the files kept
	}{
		{"one file when all fits", inferencelog.Options{MaxBytes: 1 << 20}, 10, 0, 1, 10},
		{"by size: 3 lines a file", inferencelog.Options{MaxBytes: int64(3*line + line/2)}, 10, 0, 4, 10},
		{"by size: a line larger than the limit still goes", inferencelog.Options{MaxBytes: 10}, 3, 0, 3, 3},
		{"by age: a file a minute", inferencelog.Options{MaxAge: time.Minute}, 6, 30 * time.Second, 3, 6},
		{"max files: the oldest go", inferencelog.Options{MaxBytes: int64(line), MaxFiles: 2}, 5, 0, 2, 2},
		{"max files with age", inferencelog.Options{MaxAge: time.Second, MaxFiles: 3}, 8, time.Second, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
			tt.opts.Dir, tt.opts.Now = t.TempDir(), clk.Now
			s, start, err := inferencelog.OpenPaused(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			start()
			for i := range tt.records {
				s.Log(context.Background(), regression("req-"+string(rune('a'+i))+"aaa"))
				// wait until written, so the clock moves between records
				for deadline := time.Now().Add(5 * time.Second); ; {
					if files, _ := inferencelog.Files(tt.opts.Dir); len(files) > 0 && queued(s) == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("record not taken by the writer")
					}
					time.Sleep(time.Millisecond)
				}
				clk.Add(tt.step)
			}
			closeSink(t, s)
			recs, files := readAll(t, tt.opts.Dir)
			if len(files) != tt.wantFiles || len(recs) != tt.wantLines {
				t.Fatalf("%d files with %d records, want %d and %d", len(files), len(recs), tt.wantFiles, tt.wantLines)
			}
			if recs[len(recs)-1]["requestid"] != "req-"+string(rune('a'+tt.records-1))+"aaa" {
				t.Errorf("the newest record is not kept: %v", recs[len(recs)-1]["requestid"])
			}
			for _, f := range files {
				if !strings.HasPrefix(filepath.Base(f), "inference-2026120") || !strings.HasSuffix(f, ".jsonl") {
					t.Errorf("file name %s", f)
				}
			}
		})
	}
}

// queued is how many records wait for the writer, and one more while it
// writes: the test moves the clock only between records.
func queued(s *inferencelog.Sink) int { return s.Queued() }

func TestOpenDeletesFilesBeyondMaxFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"inference-20261201T000000.000000.jsonl", "inference-20261202T000000.000000.jsonl",
		"inference-20261203T000000.000000.jsonl", "other.txt"} {
		os.WriteFile(filepath.Join(dir, name), []byte("{}\n"), 0o644)
	}
	s, err := inferencelog.Open(inferencelog.Options{Dir: dir, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	s.Log(context.Background(), regression("new"))
	closeSink(t, s)
	files, _ := inferencelog.Files(dir)
	if len(files) != 2 || filepath.Base(files[0]) != "inference-20261203T000000.000000.jsonl" {
		t.Errorf("files kept: %v", files)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.txt")); err != nil {
		t.Errorf("a file not the log's was deleted: %v", err)
	}
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	dir := t.TempDir()
	s, start, err := inferencelog.OpenPaused(inferencelog.Options{Dir: dir, Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	var accepted int
	for i := range 5 {
		if s.Log(context.Background(), regression("r"+string(rune('0'+i)))) {
			accepted++
		}
	}
	if accepted != 3 || s.Dropped()[inferencelog.DropQueueFull] != 2 {
		t.Fatalf("accepted %d, dropped %v; want 3 and 2 for a full queue", accepted, s.Dropped())
	}
	start()
	closeSink(t, s)
	recs, _ := readAll(t, dir)
	if len(recs) != 3 || s.Written() != 3 {
		t.Errorf("%d records in the files, %d counted written; want 3", len(recs), s.Written())
	}
	if s.Log(context.Background(), regression("late")) || s.Dropped()[inferencelog.DropClosed] != 1 {
		t.Errorf("a record after Close was not dropped and counted: %v", s.Dropped())
	}
}

func TestCloseDrainsTheQueue(t *testing.T) {
	dir := t.TempDir()
	s, err := inferencelog.Open(inferencelog.Options{Dir: dir, Queue: 10_000, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		if !s.Log(context.Background(), regression("r")) {
			t.Fatalf("record %d dropped", i)
		}
	}
	closeSink(t, s)
	recs, _ := readAll(t, dir)
	if len(recs) != n || s.Written() != n {
		t.Errorf("%d records written (counted %d), want %d", len(recs), s.Written(), n)
	}
}

func TestFlushesPeriodically(t *testing.T) {
	dir := t.TempDir()
	s, err := inferencelog.Open(inferencelog.Options{Dir: dir, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer closeSink(t, s)
	s.Log(context.Background(), regression("r"))
	for deadline := time.Now().Add(5 * time.Second); s.Written() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the record was not flushed before Close")
		}
	}
	if recs, _ := readAll(t, dir); len(recs) != 1 {
		t.Errorf("%d records on disk after a flush, want 1", len(recs))
	}
}

func TestDiskErrorDropsAndCounts(t *testing.T) {
	dir := t.TempDir()
	s, err := inferencelog.Open(inferencelog.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// The directory goes away: opening a file fails, the record is dropped.
	os.RemoveAll(dir)
	if !s.Log(context.Background(), regression("r")) {
		t.Fatal("queued record refused")
	}
	closeSink(t, s)
	if s.Errors() == 0 || s.Dropped()[inferencelog.DropWriteError] != 1 || s.Written() != 0 {
		t.Errorf("errors %d, dropped %v, written %d; want an error and 1 dropped", s.Errors(), s.Dropped(), s.Written())
	}
}
