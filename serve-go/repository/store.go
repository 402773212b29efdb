package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"skl2go"
)

// Loader turns a version read from the repository into a model ready to
// serve (in the server: onnx.Runtime.Load, which checks the graph against
// model.json and replays its examples). Start-up and hot reload both load
// through it, so a version is checked the same way whenever it is loaded.
type Loader func(Entry) (skl2go.Model, error)

// Options configure a Store.
type Options struct {
	// Keep is how many versions of each model are served: the latest Keep
	// versions that load. 1 (the default) serves the latest only.
	Keep int
	// Logger receives one line per version loaded, refused and unloaded.
	Logger *slog.Logger
	// ResolveAlias, if set, gives the version a registry alias of the model
	// points to, for experiment variants named by alias (else refused).
	ResolveAlias func(model, alias string) (int, error)
}

// Store holds the loaded model versions and finds them by name and version.
// It is safe for concurrent use.
//
// Versions are reference-counted: Acquire takes a reference that its caller
// releases when done, and the store holds one of its own while it serves a
// version. A version the store stops serving (replaced by a newer one, or
// removed from disk) loses the store's reference at once, so no new request
// finds it, and is closed when its last in-flight request releases it: a
// request never runs on a closed model.
type Store struct {
	root   string
	load   Loader
	keep   int
	logger *slog.Logger

	syncMu  sync.Mutex         // one Sync at a time; guards refused, invalid and experimentStates
	refused map[string]refusal // version directories that failed to load, by path
	invalid map[string]bool    // directories that are not model names, already logged

	resolveAlias     func(model, alias string) (int, error)
	experimentStates map[string]experimentState // by model (experiment.go)

	mu          sync.RWMutex
	models      map[string]map[int]*handle
	base        map[string]int                // the version Serve chose, by model: it answers version 0
	experiments map[string]*skl2go.Experiment // running, by model
	failures    map[string]int                // versions refused since start-up, by model name
	closed      bool
}

var _ skl2go.ModelStore = (*Store)(nil)

// refusal remembers a version that failed to load, with the state of its
// files then: it is tried again only when that state changes.
type refusal struct {
	stamp string
	err   error
}

// handle is a loaded version and its references.
type handle struct {
	model  skl2go.Model
	dir    string
	refs   atomic.Int64  // the store's reference (while served) plus one per Acquire
	done   chan struct{} // closed once the model is closed
	logger *slog.Logger
	// loadSeconds is how long loadVersion took: reading, loading, checking.
	loadSeconds float64
}

func newHandle(m skl2go.Model, dir string, logger *slog.Logger) *handle {
	h := &handle{model: m, dir: dir, done: make(chan struct{}), logger: logger}
	h.refs.Store(1)
	return h
}

// release drops a reference; the last one closes the model.
func (h *handle) release() {
	switch n := h.refs.Add(-1); {
	case n > 0:
		return
	case n < 0:
		panic("repository: model version released more often than acquired")
	}
	meta := h.model.Metadata()
	if err := h.model.Close(); err != nil {
		h.logger.Error("closing model version", "model", meta.Name, "version", meta.Version, "err", err)
	} else {
		h.logger.Info("model version unloaded", "model", meta.Name, "version", meta.Version, "path", h.dir)
	}
	close(h.done)
}

// NewStore returns a store serving the given models, which it never
// reloads. (Open is the store of a model repository.)
func NewStore(models ...skl2go.Model) *Store {
	s := newStore("", nil, Options{})
	for _, m := range models {
		meta := m.Metadata()
		if s.models[meta.Name] == nil {
			s.models[meta.Name] = make(map[int]*handle)
		}
		s.models[meta.Name][meta.Version] = newHandle(m, "", s.logger)
	}
	return s
}

func newStore(root string, load Loader, opts Options) *Store {
	if opts.Keep < 1 {
		opts.Keep = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		root: root, load: load, keep: opts.Keep, logger: opts.Logger, resolveAlias: opts.ResolveAlias,
		experimentStates: make(map[string]experimentState),
		refused:          make(map[string]refusal),
		invalid:          make(map[string]bool),
		models:           make(map[string]map[int]*handle),
		base:             make(map[string]int),
		experiments:      make(map[string]*skl2go.Experiment),
		failures:         make(map[string]int),
	}
}

// Open loads the latest opts.Keep versions of every model under root. It is
// strict: a repository with no model, a model without versions, a directory
// that is not a model name, or any of those versions failing to load is an
// error naming the path, and nothing is served.
func Open(root string, load Loader, opts Options) (*Store, error) {
	s := newStore(root, load, opts)
	models, invalid, err := Scan(root)
	if err != nil {
		return nil, err
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("%s: not a valid model name (use letters, digits, '_', '.', '-')", invalid[0])
	}
	if len(models) == 0 {
		return nil, fmt.Errorf("no models in %s: publish one with `make train export`", root)
	}
	for _, m := range models {
		if len(m.Versions) == 0 {
			s.Close()
			return nil, fmt.Errorf("%s: no versions (expected directories named 1, 2, …)", filepath.Join(root, m.Name))
		}
		s.models[m.Name] = make(map[int]*handle)
		for _, v := range newestFirst(m.Versions)[:min(s.keep, len(m.Versions))] {
			h, err := s.loadVersion(m.Name, v)
			if err != nil {
				s.Close()
				return nil, err
			}
			s.models[m.Name][v] = h
		}
		if e := s.syncExperiment(m, nil, s.models[m.Name]); e != nil {
			s.experiments[m.Name] = e
		}
	}
	return s, nil
}

// New returns an empty store over root, whose versions are chosen by its
// caller with Serve rather than by Sync (the MLflow registry poller: the
// version an alias points to, not the latest on disk). Until the first
// Serve succeeds it serves nothing.
func New(root string, load Loader, opts Options) *Store {
	return newStore(root, load, opts)
}

// Serve makes root/name/version the version of the model served (the one
// a request that pins no version gets, when no experiment assigns one): it
// is read, loaded and checked exactly as Sync checks a version, then
// swapped in, together with the model's experiment read again
// (SyncExperiment); the version it replaces is unloaded once its in-flight
// requests are done. A version that fails is refused: logged, counted in
// LoadFailures and returned as the error, and the version serving keeps
// serving. Serving the version already served changes nothing but the
// experiment.
func (s *Store) Serve(name string, version int) error {
	if s.load == nil {
		return fmt.Errorf("model %s: this store serves a fixed set of models", name)
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.isClosed() {
		return fmt.Errorf("model %s: the store is closed", name)
	}
	return s.serveLocked(name, version)
}

// SyncExperiment reads root/<name>/experiment.json again for a model that
// Serve serves, as Sync does for a repository's models: the versions it
// names (aliases resolved by Options.ResolveAlias) are loaded beside the
// version served, then the experiment applies; one that is refused is
// logged once and the experiment running keeps running. A model Serve has
// not served yet is left alone.
func (s *Store) SyncExperiment(name string) {
	if s.load == nil {
		return
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.RLock()
	version, ok := s.base[name]
	s.mu.RUnlock()
	if ok && !s.isClosed() {
		s.serveLocked(name, version) // the base version is served: only the experiment can change
	}
}

// serveLocked serves version as the model's base version, beside the
// versions its experiment needs. It holds syncMu.
func (s *Store) serveLocked(name string, version int) error {
	serving := s.snapshot()
	kept := make(map[int]*handle)
	if h, ok := serving[name][version]; ok {
		kept[version] = h
	} else {
		h, err := s.loadVersion(name, version)
		if err != nil {
			s.countFailure(name)
			s.logger.Error("model version refused; the versions serving keep serving", "model", name,
				"version", version, "path", filepath.Join(s.root, name, strconv.Itoa(version)), "err", err.Error(),
				"serving", versionList(serving[name]))
			return err
		}
		kept[version] = h
	}
	versions, _ := Versions(filepath.Join(s.root, name)) // unreadable: the experiment names no version there
	experiments := s.experimentsCopy()
	delete(experiments, name)
	if e := s.syncExperiment(ModelDir{Name: name, Versions: versions}, serving[name], kept); e != nil {
		experiments[name] = e
	}
	serving[name] = kept
	s.swapExperiments(serving, experiments, func() { s.base[name] = version })
	return nil
}

func (s *Store) experimentsCopy() map[string]*skl2go.Experiment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*skl2go.Experiment, len(s.experiments))
	for name, e := range s.experiments {
		out[name] = e
	}
	return out
}

// loadVersion reads, loads and checks one version.
func (s *Store) loadVersion(name string, version int) (*handle, error) {
	start := time.Now()
	entry, err := Read(s.root, name, version)
	if err != nil {
		return nil, err
	}
	m, err := s.load(entry)
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	s.logger.Info("model version loaded", "model", name, "version", version, "path", entry.Dir,
		"inputs", len(entry.Metadata.Inputs), "load_ms", took.Milliseconds())
	h := newHandle(m, entry.Dir, s.logger)
	h.loadSeconds = took.Seconds()
	return h, nil
}

// Sync brings the store in line with the repository on disk, for each model:
//   - it serves the latest Keep versions that load; a version not loaded yet
//     is loaded and checked beside the ones serving, then swapped in;
//   - a version that fails to load is refused: logged with its directory and
//     the reason, counted in LoadFailures, and not tried again until its
//     files change; the versions serving keep serving;
//   - a version no longer selected (a newer one replaced it, or its directory
//     was removed) is unloaded once its in-flight requests are done.
//
// A model whose directory is gone is unloaded. A model whose directory is
// still there but holds no version that loads keeps the versions it serves
// (a half-done change to the directory must not take a model offline).
// Sync returns the number of versions loaded and refused.
func (s *Store) Sync() (loaded, refused int) {
	if s.load == nil {
		return 0, 0 // a fixed set of models (NewStore)
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.isClosed() {
		return 0, 0
	}
	models, invalid, err := Scan(s.root)
	if err != nil {
		s.logger.Error("model repository unreadable; serving what is loaded", "path", s.root, "err", err)
		return 0, 0
	}
	for _, path := range invalid {
		if !s.invalid[path] {
			s.invalid[path] = true
			s.logger.Warn("ignoring a directory that is not a valid model name", "path", path)
		}
	}

	serving := s.snapshot()
	next := make(map[string]map[int]*handle, len(models))
	experiments := make(map[string]*skl2go.Experiment)
	onDisk := make(map[string]bool) // version directories seen, to forget old refusals
	for _, m := range models {
		kept := make(map[int]*handle)
		for _, v := range newestFirst(m.Versions) {
			if len(kept) == s.keep {
				break
			}
			dir := filepath.Join(s.root, m.Name, strconv.Itoa(v))
			onDisk[dir] = true
			if h, ok := serving[m.Name][v]; ok {
				kept[v] = h
				continue
			}
			stamp := stampDir(dir)
			if r, ok := s.refused[dir]; ok && r.stamp == stamp {
				continue
			}
			h, err := s.loadVersion(m.Name, v)
			if err != nil {
				refused++
				s.refused[dir] = refusal{stamp: stamp, err: err}
				s.countFailure(m.Name)
				s.logger.Error("model version refused; the versions serving keep serving",
					"model", m.Name, "version", v, "path", dir, "err", err.Error(), "serving", versionList(serving[m.Name]))
				continue
			}
			delete(s.refused, dir)
			loaded++
			kept[v] = h
		}
		if len(kept) == 0 && len(serving[m.Name]) > 0 {
			s.logger.Warn("no version of the model loads; keeping the versions serving", "model", m.Name,
				"path", filepath.Join(s.root, m.Name), "serving", versionList(serving[m.Name]))
			kept = serving[m.Name]
		}
		if len(kept) > 0 {
			if e := s.syncExperiment(m, serving[m.Name], kept); e != nil {
				experiments[m.Name] = e
			}
		}
		if len(kept) > 0 {
			next[m.Name] = kept
		}
	}
	for dir := range s.refused {
		if _, err := os.Stat(dir); !onDisk[dir] && err != nil { // an experiment's older version is not visited above
			delete(s.refused, dir)
		}
	}
	s.swapExperiments(next, experiments, nil)
	return loaded, refused
}

// snapshot copies the serving map (handles are shared, not copied).
func (s *Store) snapshot() map[string]map[int]*handle {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]map[int]*handle, len(s.models))
	for name, versions := range s.models {
		out[name] = make(map[int]*handle, len(versions))
		for v, h := range versions {
			out[name][v] = h
		}
	}
	return out
}

// swapExperiments serves next and drops the store's reference to every
// version it no longer contains (Sync and Serve hold syncMu, so the store
// is open here); in the same step it replaces the experiments running
// (unless experiments is nil), so that a request never sees an experiment
// whose versions are not served yet, and runs also, if set (Serve's change
// of the base version).
func (s *Store) swapExperiments(next map[string]map[int]*handle, experiments map[string]*skl2go.Experiment, also func()) {
	s.mu.Lock()
	old := s.models
	s.models = next
	if experiments != nil {
		s.experiments = experiments
	}
	if also != nil {
		also()
	}
	s.mu.Unlock()
	for name, versions := range old {
		for v, h := range versions {
			if next[name][v] != h {
				h.release()
			}
		}
	}
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

func (s *Store) countFailure(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[name]++
}

// Watch calls Sync every interval (never when interval is 0) and whenever
// reload receives a signal (SIGHUP in the server), until ctx ends.
func (s *Store) Watch(ctx context.Context, interval time.Duration, reload <-chan os.Signal) {
	var tick <-chan time.Time
	if interval > 0 {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			s.Sync()
		case sig := <-reload:
			loaded, refused := s.Sync()
			s.logger.Info("model repository reloaded", "signal", sig.String(), "loaded", loaded, "refused", refused,
				"models", len(s.Models()))
		}
	}
}

// Acquire implements skl2go.ModelStore.
func (s *Store) Acquire(name string, version int) (skl2go.Model, func(), error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	versions, ok := s.models[name]
	if !ok {
		return nil, nil, skl2go.Errorf(skl2go.ENOTFOUND, "model %q not found (serving: %s)", name, s.namesLocked())
	}
	if version == 0 {
		version = s.defaultLocked(name, versions)
	}
	h, ok := versions[version]
	if !ok {
		return nil, nil, skl2go.Errorf(skl2go.ENOTFOUND, "model %q has no version %d loaded (serving %s)",
			name, version, describeVersions(versions))
	}
	// Under the read lock, so swap (which takes the write lock before
	// dropping the store's reference) cannot close h between lookup and here.
	h.refs.Add(1)
	return h.model, sync.OnceFunc(h.release), nil
}

// Models implements skl2go.ModelStore.
func (s *Store) Models() []skl2go.ModelSummary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]skl2go.ModelSummary, 0, len(s.models))
	for name, versions := range s.models {
		out = append(out, skl2go.ModelSummary{Name: name, Versions: versionList(versions), Latest: s.defaultLocked(name, versions),
			LoadSeconds: versions[latest(versions)].loadSeconds})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LoadFailures implements skl2go.ModelStore.
func (s *Store) LoadFailures() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.failures))
	for name, n := range s.failures {
		out[name] = n
	}
	return out
}

// Close stops serving every version and waits until each is closed, that
// is until every request that acquired one has released it. Sync does
// nothing afterwards.
func (s *Store) Close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	old := s.models
	s.models, s.closed = nil, true
	s.mu.Unlock()
	releaseAll(old)
	for _, versions := range old {
		for _, h := range versions {
			<-h.done
		}
	}
	return nil
}

func releaseAll(models map[string]map[int]*handle) {
	for _, versions := range models {
		for _, h := range versions {
			h.release()
		}
	}
}

func (s *Store) namesLocked() string {
	names := make([]string, 0, len(s.models))
	for name := range s.models {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// defaultLocked is the version a request that pins none gets: the one
// Serve chose when it is served (beside it, an experiment's versions may be
// newer), else the latest. It holds mu.
func (s *Store) defaultLocked(name string, versions map[int]*handle) int {
	if v, ok := s.base[name]; ok {
		if _, served := versions[v]; served {
			return v
		}
	}
	return latest(versions)
}

func latest(versions map[int]*handle) int {
	best := 0
	for v := range versions {
		best = max(best, v)
	}
	return best
}

func versionList(versions map[int]*handle) []int {
	out := make([]int, 0, len(versions))
	for v := range versions {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

// describeVersions says which versions are served: "version 5" or "versions 4, 5".
func describeVersions(versions map[int]*handle) string {
	list := versionList(versions)
	if len(list) == 1 {
		return "version " + strconv.Itoa(list[0])
	}
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = strconv.Itoa(v)
	}
	return "versions " + strings.Join(parts, ", ")
}

func newestFirst(versions []int) []int {
	out := slices.Clone(versions)
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// stampDir describes the state of a version directory's files (name, size,
// modification time of each, and of the directory): a refused version is
// retried when its stamp changes, for instance when a copy finishes.
func stampDir(dir string) string {
	var b strings.Builder
	info, err := os.Stat(dir)
	if err != nil {
		return "missing"
	}
	fmt.Fprintf(&b, "%d;", info.ModTime().UnixNano())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			fmt.Fprintf(&b, "%s:?;", e.Name())
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}
