package repository_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"skl2go"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

// tracked wraps a real ONNX Runtime model and fails the test if a request
// runs on it after Close, or Close comes while a request runs.
type tracked struct {
	skl2go.Model
	t      testing.TB
	active atomic.Int32
	closed atomic.Bool
}

func (m *tracked) Predict(ctx context.Context, b *skl2go.Batch) ([]skl2go.Output, error) {
	m.active.Add(1) // before looking at closed; Close does the opposite
	defer m.active.Add(-1)
	if m.closed.Load() {
		m.t.Errorf("version %d: Predict after Close", m.Metadata().Version)
		return nil, fmt.Errorf("closed")
	}
	return m.Model.Predict(ctx, b)
}

func (m *tracked) Close() error {
	if m.closed.Swap(true) {
		m.t.Errorf("version %d closed twice", m.Metadata().Version)
	}
	if n := m.active.Load(); n != 0 {
		m.t.Errorf("version %d closed while %d requests run on it", m.Metadata().Version, n)
	}
	return m.Model.Close()
}

// loader loads through the real runtime, as the server does, and keeps
// track of every model it made.
type loader struct {
	t      testing.TB
	calls  atomic.Int32
	mu     sync.Mutex
	models map[int][]*tracked // by version
}

func newLoader(t testing.TB) *loader { return &loader{t: t, models: make(map[int][]*tracked)} }

func (l *loader) load(e repository.Entry) (skl2go.Model, error) {
	l.calls.Add(1)
	m, err := runtime.Load(e.Dir, e.Metadata)
	if err != nil {
		return nil, err
	}
	tm := &tracked{Model: m, t: l.t}
	l.mu.Lock()
	l.models[e.Metadata.Version] = append(l.models[e.Metadata.Version], tm)
	l.mu.Unlock()
	return tm, nil
}

// closed reports whether every model loaded for version is closed.
func (l *loader) closed(version int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.models[version] {
		if !m.closed.Load() {
			return false
		}
	}
	return len(l.models[version]) > 0
}

// allClosed fails the test if any model loaded is still open.
func (l *loader) allClosed(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for v, ms := range l.models {
		for _, m := range ms {
			if !m.closed.Load() {
				t.Errorf("version %d still open", v)
			}
		}
	}
}

func open(t *testing.T, root string, l *loader, keep int, logs *bytes.Buffer) *repository.Store {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if logs != nil {
		logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	store, err := repository.Open(root, l.load, repository.Options{Keep: keep, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func served(store *repository.Store) string { return fmt.Sprint(store.Models()) }

func TestSyncSwapsInANewVersionAndClosesTheOldOnceItsRequestsAreDone(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	fixture.CopyVersion(t, models, root, 1)
	store := open(t, root, l, 1, nil)
	defer store.Close()

	old, releaseOld, err := store.Acquire(fixture.Model, 0) // a request in flight on version 1
	if err != nil || old.Metadata().Version != 1 {
		t.Fatalf("Acquire = %v, %v", old, err)
	}
	fixture.CopyVersion(t, models, root, 2)
	if loaded, refused := store.Sync(); loaded != 1 || refused != 0 {
		t.Fatalf("Sync = %d loaded, %d refused; want 1, 0", loaded, refused)
	}
	if got := served(store); got != "[{trip_duration [2] 2}]" {
		t.Fatalf("after Sync: %s, want only version 2", got)
	}
	if s := store.Models()[0].LoadSeconds; s <= 0 {
		t.Errorf("LoadSeconds = %v, want the time version 2 took to load", s)
	}
	m, release, err := store.Acquire(fixture.Model, 0)
	if err != nil || m.Metadata().Version != 2 {
		t.Fatalf("a new request got %v, %v; want version 2", m, err)
	}
	release()
	if _, _, err := store.Acquire(fixture.Model, 1); skl2go.ErrorCode(err) != skl2go.ENOTFOUND {
		t.Errorf("version 1 still addressable after the swap: %v", err)
	}

	// The request in flight finishes on version 1, which is closed only then.
	if l.closed(1) {
		t.Fatal("version 1 closed while a request holds it")
	}
	if err := fixture.PredictExamples(old); err != nil {
		t.Fatal(err)
	}
	releaseOld()
	releaseOld() // a second call is harmless
	if !l.closed(1) {
		t.Fatal("version 1 still open after its last request")
	}
	if l.closed(2) {
		t.Fatal("version 2 closed")
	}
}

// logRecord returns the JSON log record with the given message.
func logRecord(t *testing.T, logs *bytes.Buffer, msg string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == msg {
			return rec
		}
	}
	t.Fatalf("no log record %q in:\n%s", msg, logs)
	return nil
}

// sha256Of returns the hex checksum of a file.
func sha256Of(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestSyncRefusesABrokenVersionOnceAndKeepsServing(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"corrupt ONNX with a matching checksum", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "model.onnx")
			data, _ := os.ReadFile(path)
			os.WriteFile(path, data[:len(data)/2], 0o644)
			sum := sha256Of(t, path)
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["files"].(map[string]any)["onnx"].(map[string]any)["sha256"] = sum
			})
		}, "ONNX Runtime cannot read the graph"},
		{"model.json disagrees with the graph", func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["inputs"].([]any)[2].(map[string]any)["type"] = "tensor(double)"
			})
		}, `model.json disagrees with the graph: input "trip_distance"`},
		{"graph does not reproduce sklearn", func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				ex := m["examples"].([]any)[0].(map[string]any)
				ex["prediction"] = ex["prediction"].(float64) + 1
			})
		}, "does not reproduce sklearn's predictions"},
		{"checksum mismatch", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "model.onnx"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{0})
			f.Close()
		}, "altered or half-written"},
		{"half-written: no model.onnx yet", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.onnx"))
		}, "model.onnx: no such file"},
		{"half-written: no model.json yet", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.json"))
		}, "model.json: no such file"},
		{"model.json for another version", func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) { m["version"] = 7 })
		}, "model.json names trip_duration version 7, but the directory is trip_duration version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, l, logs := t.TempDir(), newLoader(t), new(bytes.Buffer)
			fixture.CopyVersion(t, models, root, 1)
			store := open(t, root, l, 1, logs)
			defer store.Close()

			dir := fixture.CopyVersion(t, models, root, 2)
			tt.damage(t, dir)
			if loaded, refused := store.Sync(); loaded != 0 || refused != 1 {
				t.Fatalf("Sync = %d loaded, %d refused; want 0, 1", loaded, refused)
			}
			if got := served(store); got != "[{trip_duration [1] 1}]" {
				t.Fatalf("after the refusal: %s, want version 1 serving", got)
			}
			m, release, err := store.Acquire(fixture.Model, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := fixture.PredictExamples(m); err != nil {
				t.Fatal(err)
			}
			release()
			refusal := logRecord(t, logs, "model version refused; the versions serving keep serving")
			if refusal["path"] != dir || !strings.Contains(fmt.Sprint(refusal["err"]), tt.want) ||
				fmt.Sprint(refusal["serving"]) != "[1]" || refusal["level"] != "ERROR" {
				t.Errorf("refusal logged as %v; want path %s, an err containing %q, serving [1]", refusal, dir, tt.want)
			}
			if got := store.LoadFailures()[fixture.Model]; got != 1 {
				t.Errorf("LoadFailures = %d, want 1", got)
			}

			// Not retried while its files stay as they are...
			calls := l.calls.Load()
			for range 3 {
				if loaded, refused := store.Sync(); loaded != 0 || refused != 0 {
					t.Fatalf("Sync of an unchanged broken version: %d loaded, %d refused; want 0, 0", loaded, refused)
				}
			}
			if l.calls.Load() != calls || store.LoadFailures()[fixture.Model] != 1 {
				t.Errorf("unchanged broken version retried: %d more loads, %d failures",
					l.calls.Load()-calls, store.LoadFailures()[fixture.Model])
			}
			// ...and loaded once they are repaired.
			os.RemoveAll(dir)
			fixture.CopyVersion(t, models, root, 2)
			if loaded, refused := store.Sync(); loaded != 1 || refused != 0 {
				t.Fatalf("Sync after the repair = %d loaded, %d refused; want 1, 0", loaded, refused)
			}
			if got := served(store); got != "[{trip_duration [2] 2}]" {
				t.Fatalf("after the repair: %s, want version 2", got)
			}
		})
	}
}

func TestSyncServesTheLatestNAndUnloadsRemovedVersions(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	for _, v := range []int{1, 2, 3} {
		fixture.CopyVersion(t, models, root, v)
	}
	store := open(t, root, l, 2, nil)
	steps := []struct {
		name   string
		change func()
		want   string
	}{
		{"opened", func() {}, "[{trip_duration [2 3] 3}]"},
		{"version 4 published", func() { fixture.CopyVersion(t, models, root, 4) }, "[{trip_duration [3 4] 4}]"},
		{"version 4 removed (rolled back)", func() { os.RemoveAll(filepath.Join(root, fixture.Model, "4")) }, "[{trip_duration [2 3] 3}]"},
		{"a half-written copy in a hidden directory", func() {
			os.MkdirAll(filepath.Join(root, fixture.Model, ".incoming-5"), 0o755)
		}, "[{trip_duration [2 3] 3}]"},
		{"every version removed, the model directory kept", func() {
			for _, v := range []string{"1", "2", "3"} {
				os.RemoveAll(filepath.Join(root, fixture.Model, v))
			}
		}, "[{trip_duration [2 3] 3}]"},
		{"model directory removed", func() { os.RemoveAll(filepath.Join(root, fixture.Model)) }, "[]"},
	}
	for _, step := range steps {
		step.change()
		store.Sync()
		if got := served(store); got != step.want {
			t.Fatalf("%s: serving %s, want %s", step.name, got, step.want)
		}
	}
	if !l.closed(4) || !l.closed(3) {
		t.Error("versions 3 and 4 still open after their removal")
	}
	store.Close()
	l.allClosed(t)
	if store.Sync(); served(store) != "[]" {
		t.Error("Sync after Close loaded models")
	}
}

// Requests run without pause while versions are swapped in and out: every
// request must see a whole, open model, and every version must end closed.
func TestSwapsUnderLoadNeverRunARequestOnAClosedModel(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	fixture.CopyVersion(t, models, root, 1)
	store := open(t, root, l, 2, nil)

	const workers, swaps = 8, 12
	deadline := time.Now().Add(30 * time.Second)
	stop := make(chan struct{})
	var requests atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100_000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				version := 0
				if i%3 == 0 {
					version = 1 + i%swaps // pinned versions, most of them gone
				}
				m, release, err := store.Acquire(fixture.Model, version)
				if err != nil {
					if skl2go.ErrorCode(err) != skl2go.ENOTFOUND {
						t.Error(err)
					}
					continue
				}
				if err := fixture.PredictExamples(m); err != nil {
					t.Error(err)
				}
				release()
				requests.Add(1)
			}
		}()
	}
	for v := 2; v <= swaps && time.Now().Before(deadline); v++ {
		fixture.CopyVersion(t, models, root, v)
		if v%4 == 0 { // removing a version still served: the next one down takes its place
			os.RemoveAll(filepath.Join(root, fixture.Model, fmt.Sprint(v-1)))
			store.Sync()
			fixture.CopyVersion(t, models, root, v-1)
		}
		store.Sync()
	}
	close(stop)
	wg.Wait()
	if requests.Load() == 0 {
		t.Fatal("no request ran")
	}
	if got := served(store); got != fmt.Sprintf("[{trip_duration [%d %d] %d}]", swaps-1, swaps, swaps) {
		t.Errorf("serving %s after %d versions", got, swaps)
	}
	store.Close()
	l.allClosed(t)
	t.Logf("%d requests during %d swaps", requests.Load(), swaps-1)
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatchReloadsOnSignalAndOnItsInterval(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	fixture.CopyVersion(t, models, root, 1)
	store := open(t, root, l, 1, nil)
	defer store.Close()

	reload := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); store.Watch(ctx, 0, reload) }()
	fixture.CopyVersion(t, models, root, 2)
	reload <- syscall.SIGHUP
	waitFor(t, "version 2 after SIGHUP", func() bool { return served(store) == "[{trip_duration [2] 2}]" })
	cancel()
	<-done

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	go store.Watch(ctx, 20*time.Millisecond, nil)
	fixture.CopyVersion(t, models, root, 3)
	waitFor(t, "version 3 by polling", func() bool { return served(store) == "[{trip_duration [3] 3}]" })
}

func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	fixture.CopyVersion(t, models, root, 1)
	store := open(t, root, l, 1, nil)
	m, release, err := store.Acquire(fixture.Model, 0)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { store.Close(); close(closed) }()
	// Once Close has begun, no new request gets the model...
	waitFor(t, "Close to begin", func() bool {
		_, rel, err := store.Acquire(fixture.Model, 0)
		if err == nil {
			rel()
		}
		return err != nil
	})
	// ...but the one in flight still runs on it.
	if err := fixture.PredictExamples(m); err != nil { // still open: tracked fails the test otherwise
		t.Fatal(err)
	}
	release()
	<-closed
	l.allClosed(t)
}
