// Package inferencelog is the file sink of the inference log: it writes
// skl2go.InferenceRecords as JSON Lines, one CloudEvents 1.0 event per line
// (structured mode, the attributes KServe's logger sends), to files in one
// directory per replica, rotated by size and age, the oldest deleted beyond
// a count: the log never grows without bound.
//
// Log hands a record to a bounded queue and returns at once; one goroutine
// encodes and writes, through a buffered writer flushed periodically and at
// Close. A full queue drops the record (counted), so a slow disk never
// slows a request. A disk error is counted and logged at most every few
// seconds; the sink opens a new file on the next record.
package inferencelog

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"skl2go"
	"skl2go/internal/jsonwire"
)

// Options configure a Sink. Zero values take the defaults named.
type Options struct {
	// Dir is the directory the files go to (created if missing), one per
	// replica: nothing else may write inference-*.jsonl files there.
	Dir string
	// Source is the CloudEvents source, "skl2go/<replica>" (default:
	// "skl2go/" and Dir's base name).
	Source string
	// Queue is how many records may wait for the writer (default 4096).
	Queue int
	// MaxBytes starts a new file before one grows past it (default 64 MiB).
	MaxBytes int64
	// MaxAge starts a new file once the current one is that old (default 1h).
	MaxAge time.Duration
	// MaxFiles is how many files are kept, the current one included; older
	// ones are deleted (default 24).
	MaxFiles int
	// FlushInterval is how often buffered lines are written out (default 1s).
	FlushInterval time.Duration
	// Logger reports disk errors (default: discarded).
	Logger *slog.Logger
	// Now is the clock of file names and ages (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Source == "" {
		o.Source = "skl2go/" + filepath.Base(filepath.Clean(o.Dir))
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxAge <= 0 {
		o.MaxAge = time.Hour
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = 24
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Reasons a record is dropped, as Dropped counts them.
const (
	DropQueueFull  = "queue_full"  // the writer was behind by Queue records
	DropWriteError = "write_error" // the disk refused it
	DropClosed     = "closed"      // logged after Close
)

// File names: inference-<UTC time the file was opened>.jsonl; the names
// sort in time order.
const (
	filePrefix = "inference-"
	fileSuffix = ".jsonl"
	fileTime   = "20060102T150405.000000"
)

// errorLogEvery spaces the log lines about disk errors: a full disk fails
// every record.
const errorLogEvery = 10 * time.Second

// Sink is the file inference log; it implements skl2go.InferenceLogger.
type Sink struct {
	opts   Options
	queue  chan *skl2go.InferenceRecord
	done   chan struct{} // closed by Close: drain and stop
	exited chan struct{} // closed when the writer has stopped
	closed atomic.Bool
	once   sync.Once

	backlog                          atomic.Int64 // queued or being written
	written, errors                  atomic.Uint64
	droppedFull, droppedErr, dropped atomic.Uint64 // dropped: after Close

	// The writer goroutine's own.
	file      *os.File
	w         *bufio.Writer
	size      int64
	pending   uint64 // lines buffered since the last flush
	opened    time.Time
	lastName  time.Time // the time in the newest file's name
	line      []byte
	ids       *rand.ChaCha8
	lastError time.Time
}

// Open creates Dir, deletes the files beyond MaxFiles left by an earlier
// run, and starts the writer. Files are created when records come.
func Open(opts Options) (*Sink, error) {
	s, err := newSink(opts)
	if err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

func newSink(opts Options) (*Sink, error) {
	if opts.Dir == "" {
		return nil, errors.New("inference log: no directory")
	}
	opts.defaults()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("inference log: %w", err)
	}
	var seed [32]byte
	crand.Read(seed[:])
	s := &Sink{opts: opts, queue: make(chan *skl2go.InferenceRecord, opts.Queue),
		done: make(chan struct{}), exited: make(chan struct{}), ids: rand.NewChaCha8(seed)}
	if err := s.prune(0); err != nil {
		return nil, fmt.Errorf("inference log: %w", err)
	}
	return s, nil
}

// Log queues rec for writing without blocking; false if it was dropped
// (queue full, or the sink closed). The sink reads rec later: the caller
// must not change it.
func (s *Sink) Log(_ context.Context, rec *skl2go.InferenceRecord) bool {
	if s.closed.Load() {
		s.dropped.Add(1)
		return false
	}
	s.backlog.Add(1)
	select {
	case s.queue <- rec:
		return true
	default:
		s.backlog.Add(-1)
		s.droppedFull.Add(1)
		return false
	}
}

// Close writes what is queued, flushes and closes the file, and stops the
// writer; ctx bounds the wait. Records logged after Close are dropped.
func (s *Sink) Close(ctx context.Context) error {
	s.once.Do(func() { s.closed.Store(true); close(s.done) })
	select {
	case <-s.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("inference log: %d records not written: %w", len(s.queue), ctx.Err())
	}
}

// Written counts the lines written out (one per inference, one per
// actual), as of the last flush.
func (s *Sink) Written() uint64 { return s.written.Load() }

// Dropped counts the records dropped, by reason (DropQueueFull,
// DropWriteError, DropClosed).
func (s *Sink) Dropped() map[string]uint64 {
	return map[string]uint64{DropQueueFull: s.droppedFull.Load(), DropWriteError: s.droppedErr.Load(), DropClosed: s.dropped.Load()}
}

// Errors counts the disk errors (open, write, flush, close, delete).
func (s *Sink) Errors() uint64 { return s.errors.Load() }

// Source is the CloudEvents source of the records.
func (s *Sink) Source() string { return s.opts.Source }

func (s *Sink) run() {
	defer close(s.exited)
	tick := time.NewTicker(s.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case rec := <-s.queue:
			s.write(rec)
		case <-tick.C:
			s.flush()
			if s.file != nil && s.size > 0 && s.opts.Now().Sub(s.opened) >= s.opts.MaxAge {
				s.closeFile()
			}
		case <-s.done:
			for {
				select {
				case rec := <-s.queue:
					s.write(rec)
				default:
					s.closeFile()
					return
				}
			}
		}
	}
}

// write encodes rec (one line per actual for ground truth) and writes it,
// rotating first when the line would take the file past MaxBytes or the
// file is older than MaxAge.
func (s *Sink) write(rec *skl2go.InferenceRecord) {
	defer s.backlog.Add(-1)
	if rec.Type == skl2go.ActualEventType {
		for i := range rec.Actuals {
			s.writeLine(s.appendActual(s.line[:0], rec, &rec.Actuals[i]))
		}
		return
	}
	s.writeLine(s.appendInference(s.line[:0], rec))
}

func (s *Sink) writeLine(line []byte) {
	s.line = line[:0]
	if s.file != nil && s.size > 0 &&
		(s.size+int64(len(line)) > s.opts.MaxBytes || s.opts.Now().Sub(s.opened) >= s.opts.MaxAge) {
		s.closeFile()
	}
	if s.file == nil {
		if err := s.openFile(); err != nil {
			s.fail("opening a file", err)
			s.droppedErr.Add(1)
			return
		}
	}
	s.pending++
	if _, err := s.w.Write(line); err != nil {
		s.fail("writing", err)
		s.abandonFile()
		return
	}
	s.size += int64(len(line))
}

// openFile creates the next file, named after the time, then deletes the
// oldest beyond MaxFiles.
func (s *Sink) openFile() error {
	// Names sort in the order the files were opened, even when the clock
	// steps back or two files open within a microsecond.
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastName) {
		now = s.lastName.Add(time.Microsecond)
	}
	for range 100 { // a name taken (by an earlier run): the next one
		name := filepath.Join(s.opts.Dir, filePrefix+now.Format(fileTime)+fileSuffix)
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			now = now.Add(time.Microsecond)
			continue
		}
		if err != nil {
			return err
		}
		s.file, s.size, s.opened, s.lastName = f, 0, s.opts.Now(), now
		if s.w == nil {
			s.w = bufio.NewWriterSize(f, 64<<10)
		} else {
			s.w.Reset(f)
		}
		if err := s.prune(1); err != nil {
			s.fail("deleting old files", err)
		}
		return nil
	}
	return errors.New("no free file name")
}

// prune deletes the oldest files so that at most MaxFiles remain, keep of
// them being the newest (the one being written).
func (s *Sink) prune(keep int) error {
	names, err := Files(s.opts.Dir)
	if err != nil {
		return err
	}
	limit := s.opts.MaxFiles
	if keep == 0 {
		limit-- // room for the file the next record opens
	}
	var errs []error
	for len(names) > limit && len(names) > keep {
		errs = append(errs, os.Remove(names[0]))
		names = names[1:]
	}
	return errors.Join(errs...)
}

// Files lists the inference log files in dir, oldest first.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, filePrefix) && strings.HasSuffix(n, fileSuffix) {
			names = append(names, filepath.Join(dir, n))
		}
	}
	slices.Sort(names)
	return names, nil
}

func (s *Sink) flush() {
	if s.file == nil {
		return
	}
	if err := s.w.Flush(); err != nil {
		s.fail("flushing", err)
		s.abandonFile()
		return
	}
	s.written.Add(s.pending)
	s.pending = 0
}

func (s *Sink) closeFile() {
	if s.file == nil {
		return
	}
	s.flush()
	if s.file != nil {
		if err := s.file.Close(); err != nil {
			s.fail("closing", err)
		}
		s.file = nil
	}
}

// abandonFile gives up on a file after an error: the lines not flushed
// yet are counted as dropped, and the next record opens a new file.
func (s *Sink) abandonFile() {
	s.droppedErr.Add(s.pending)
	s.pending = 0
	s.file.Close()
	s.file = nil
}

// fail counts a disk error and logs it, at most every errorLogEvery.
func (s *Sink) fail(doing string, err error) {
	s.errors.Add(1)
	if now := time.Now(); now.Sub(s.lastError) >= errorLogEvery {
		s.lastError = now
		s.opts.Logger.Error("inference log: disk error; records are dropped until it clears",
			"dir", s.opts.Dir, "doing", doing, "err", err, "errors_so_far", s.errors.Load())
	}
}

// --- encoding -----------------------------------------------------------------

// appendHeader appends the CloudEvents attributes and the extensions.
func (s *Sink) appendHeader(buf []byte, rec *skl2go.InferenceRecord, eventType, requestID string, t time.Time) []byte {
	buf = append(buf, `{"specversion":"1.0","id":"`...)
	buf = s.appendID(buf)
	buf = append(buf, `","source":`...)
	buf = jsonwire.AppendString(buf, s.opts.Source)
	buf = append(buf, `,"type":`...)
	buf = jsonwire.AppendString(buf, eventType)
	buf = append(buf, `,"time":"`...)
	buf = t.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","datacontenttype":"application/json"`...)
	if requestID != "" {
		buf = append(buf, `,"requestid":`...)
		buf = jsonwire.AppendString(buf, requestID)
	}
	if rec.Model != "" {
		buf = append(buf, `,"model":`...)
		buf = jsonwire.AppendString(buf, rec.Model)
	}
	if rec.Version > 0 {
		buf = append(buf, `,"version":`...)
		buf = strconv.AppendInt(buf, int64(rec.Version), 10)
	}
	if rec.Variant != "" {
		buf = append(buf, `,"variant":`...)
		buf = jsonwire.AppendString(buf, rec.Variant)
	}
	return buf
}

// appendID appends a random UUID (version 4).
func (s *Sink) appendID(buf []byte) []byte {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], s.ids.Uint64())
	binary.LittleEndian.PutUint64(u[8:], s.ids.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			buf = append(buf, '-')
		}
		buf = append(buf, hex[b>>4], hex[b&0x0f])
	}
	return buf
}

func (s *Sink) appendInference(buf []byte, rec *skl2go.InferenceRecord) []byte {
	eventType := rec.Type
	if eventType == "" {
		eventType = skl2go.InferenceEventType
	}
	buf = s.appendHeader(buf, rec, eventType, rec.RequestID, rec.Time)
	buf = append(buf, `,"latencyms":`...)
	buf = strconv.AppendFloat(buf, float64(rec.Latency.Microseconds())/1000, 'f', -1, 64)
	buf = append(buf, `,"data":{"inputs":{`...)
	for i := range rec.Inputs {
		if i > 0 {
			buf = append(buf, ',')
		}
		col := &rec.Inputs[i]
		buf = jsonwire.AppendString(buf, col.Name)
		buf = append(buf, ':')
		buf = appendValues(buf, col.Type, &col.Values, 0, -1)
	}
	buf = append(buf, `},"outputs":{`...)
	buf = appendOutputs(buf, rec)
	return append(buf, "}}}\n"...)
}

// appendOutputs appends "predictions" (one value per row) and, for a
// classifier, "probabilities" (one list per row).
func appendOutputs(buf []byte, rec *skl2go.InferenceRecord) []byte {
	predictions, probabilities := -1, -1
	for i := range rec.Outputs {
		switch {
		case rec.Task == skl2go.Classification && rec.Outputs[i].Name == skl2go.LabelOutput:
			predictions = i
		case rec.Task == skl2go.Classification && rec.Outputs[i].Name == skl2go.ProbabilitiesOutput:
			probabilities = i
		case rec.Task != skl2go.Classification && predictions < 0:
			predictions = i
		}
	}
	buf = append(buf, `"predictions":`...)
	if predictions < 0 {
		buf = append(buf, "[]"...)
	} else {
		buf = appendRows(buf, &rec.Outputs[predictions], true)
	}
	if probabilities >= 0 {
		buf = append(buf, `,"probabilities":`...)
		buf = appendRows(buf, &rec.Outputs[probabilities], false)
	}
	return buf
}

// appendRows appends an output as a list of rows: a value per row when each
// row has one element and flat is set, else a list per row.
func appendRows(buf []byte, out *skl2go.Output, flat bool) []byte {
	rows, per := int64(0), int64(1)
	if len(out.Shape) > 0 {
		rows = out.Shape[0]
	}
	for _, d := range out.Shape[min(1, len(out.Shape)):] {
		per *= d
	}
	if flat && per == 1 {
		return appendValues(buf, out.Type, &out.Values, 0, int(rows))
	}
	buf = append(buf, '[')
	for r := int64(0); r < rows; r++ {
		if r > 0 {
			buf = append(buf, ',')
		}
		buf = appendValues(buf, out.Type, &out.Values, int(r*per), int((r+1)*per))
	}
	return append(buf, ']')
}

// appendValues appends elements [start, end) of v (end -1: to the last) as
// a JSON list; NaN and infinities, which JSON lacks, as null.
func appendValues(buf []byte, t skl2go.DataType, v *skl2go.Values, start, end int) []byte {
	n := 0
	switch t {
	case skl2go.Float32:
		n = len(v.Float32)
	case skl2go.Float64:
		n = len(v.Float64)
	case skl2go.Int64:
		n = len(v.Int64)
	case skl2go.Int32:
		n = len(v.Int32)
	case skl2go.String:
		n = len(v.String)
	case skl2go.Bool:
		n = len(v.Bool)
	}
	if end < 0 || end > n {
		end = n
	}
	buf = append(buf, '[')
	for i := start; i < end; i++ {
		if i > start {
			buf = append(buf, ',')
		}
		switch t {
		case skl2go.Float32:
			buf = appendFloat(buf, float64(v.Float32[i]), 32)
		case skl2go.Float64:
			buf = appendFloat(buf, v.Float64[i], 64)
		case skl2go.Int64:
			buf = strconv.AppendInt(buf, v.Int64[i], 10)
		case skl2go.Int32:
			buf = strconv.AppendInt(buf, int64(v.Int32[i]), 10)
		case skl2go.String:
			buf = jsonwire.AppendString(buf, v.String[i])
		case skl2go.Bool:
			buf = strconv.AppendBool(buf, v.Bool[i])
		}
	}
	return append(buf, ']')
}

func appendFloat(buf []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(buf, "null"...)
	}
	return strconv.AppendFloat(buf, f, 'g', -1, bits)
}

func (s *Sink) appendActual(buf []byte, rec *skl2go.InferenceRecord, a *skl2go.Actual) []byte {
	buf = s.appendHeader(buf, rec, skl2go.ActualEventType, a.RequestID, rec.Time)
	buf = append(buf, `,"data":{"requestid":`...)
	buf = appendOptional(buf, a.RequestID)
	buf = append(buf, `,"key":`...)
	buf = appendOptional(buf, a.Key)
	buf = append(buf, `,"row":`...)
	buf = strconv.AppendInt(buf, int64(a.Row), 10)
	buf = append(buf, `,"actual":`...)
	buf = appendFloat(buf, a.Value, 64)
	return append(buf, "}}\n"...)
}

// appendOptional appends s as a JSON string, or null when empty.
func appendOptional(buf []byte, s string) []byte {
	if s == "" {
		return append(buf, "null"...)
	}
	return jsonwire.AppendString(buf, s)
}
