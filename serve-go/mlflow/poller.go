package mlflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"skl2go"
)

// Files of a registered version: the `onnx` flavor's directory holds the
// graph and, among its extra files, the model.json export wrote
// (train/tracking.py).
const (
	metadataFile = "model.json"
	metadataPath = "extra_files/" + metadataFile
	servingFile  = ".serving" // <cache>/<name>/.serving: the version served last
	maxMetadata  = 16 << 20
	// downloadTimeout bounds the transfer of one version's files.
	downloadTimeout = 10 * time.Minute
)

// Store receives the versions to serve; repository.Store implements it.
type Store interface {
	// Serve loads and checks cache/name/version and serves it in place of
	// the model's current version, or refuses it with an error.
	Serve(name string, version int) error
	// Acquire returns the version served (version 0: the one Serve chose).
	Acquire(name string, version int) (skl2go.Model, func(), error)
	// SyncExperiment reads cache/name/experiment.json again and runs it
	// beside the version served, or ends it, or refuses it (logged) and
	// keeps the experiment running.
	SyncExperiment(name string)
	// Models lists the versions served of each model.
	Models() []skl2go.ModelSummary
}

// Observer is told what the poller does; the HTTP package's metrics
// implement it.
type Observer interface {
	// ObserveRegistryPoll is called after each round: err is nil, or why
	// the registry could not be asked.
	ObserveRegistryPoll(err error)
	// ObserveRegistryRefused is called when a version the alias points to is refused.
	ObserveRegistryRefused(model string, version int)
	// ObserveRegistryServed is called when a version is swapped in.
	ObserveRegistryServed(model string, version int)
}

// Options configure a Poller.
type Options struct {
	Alias      string        // the alias followed, "champion" by default
	Models     []string      // the registered models served; empty: every one
	Interval   time.Duration // between polls while the registry answers
	MaxBackoff time.Duration // the longest wait after failed polls (default 30s)
	Logger     *slog.Logger
	Observer   Observer
	OnServe    func() // called after each poll, and after ServeCached, that leaves a version served (the server turns ready)
}

// Poller keeps the store serving the versions the registry's alias points to.
type Poller struct {
	client *Client
	store  Store
	cache  string
	opts   Options

	refused map[string]int  // model -> the version refused, not tried again
	absent  map[string]bool // models without the alias, already logged

	mu           sync.Mutex                // guards aliases: the store resolves through Resolve
	aliases      map[string]map[string]int // model -> alias -> version, as the registry said last
	extraRefused map[string]map[int]bool   // model -> versions its experiment needs that were refused
}

// NewPoller returns a poller of client's registry that caches versions
// under cache (the store's root) and serves them through store.
func NewPoller(client *Client, store Store, cache string, opts Options) *Poller {
	if opts.Alias == "" {
		opts.Alias = "champion"
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.OnServe == nil {
		opts.OnServe = func() {}
	}
	return &Poller{client: client, store: store, cache: cache, opts: opts,
		refused: make(map[string]int), absent: make(map[string]bool),
		aliases: make(map[string]map[string]int), extraRefused: make(map[string]map[int]bool)}
}

// ServeCached serves, for each model in the cache, the version it served
// last (before a restart), without asking the registry. It returns how many
// models it serves.
func (p *Poller) ServeCached() int {
	dirs, err := os.ReadDir(p.cache)
	if err != nil {
		p.opts.Logger.Warn("registry cache unreadable", "path", p.cache, "err", err.Error())
		return 0
	}
	served := 0
	for _, d := range dirs {
		name := d.Name()
		if !d.IsDir() || !skl2go.ValidName(name) || !p.wanted(name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(p.cache, name, servingFile))
		if err != nil {
			continue
		}
		version, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			continue
		}
		p.readAliases(name) // before Serve, which starts the cached experiment
		if err := p.store.Serve(name, version); err != nil {
			continue // the store logged and counted it
		}
		p.opts.Logger.Info("serving the cached registry version", "model", name, "version", version,
			"path", filepath.Join(p.cache, name, strconv.Itoa(version)))
		p.opts.Observer.ObserveRegistryServed(name, version)
		served++
	}
	if served > 0 {
		p.opts.OnServe()
	}
	return served
}

func (p *Poller) wanted(name string) bool {
	return len(p.opts.Models) == 0 || slices.Contains(p.opts.Models, name)
}

// Run polls at once, then every Interval until ctx ends, and whenever now
// receives a signal (SIGHUP in the server). After a failed poll it waits
// twice as long as the time before, up to MaxBackoff.
func (p *Poller) Run(ctx context.Context, now <-chan os.Signal) {
	wait, failures := time.Duration(0), 0
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-now:
			timer.Stop()
		}
		err := p.Poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			wait = min(p.opts.Interval<<min(failures, 16), p.opts.MaxBackoff)
			p.opts.Logger.Error("model registry unreachable; serving what is loaded", "registry", p.client.URL(),
				"err", err.Error(), "failures", failures, "retry_in", wait.String())
		} else {
			if failures > 0 {
				p.opts.Logger.Info("model registry answers again", "registry", p.client.URL(), "after_failures", failures)
			}
			failures, wait = 0, p.opts.Interval
		}
		timer.Reset(wait)
	}
}

// Poll does one round: for each model, the version its alias points to is
// fetched, checked and served if it is new. It returns an error only when
// the registry could not be asked or could not deliver a version's files
// (down, slow, refusing): refused versions are logged and counted instead.
func (p *Poller) Poll(ctx context.Context) error {
	err := p.poll(ctx)
	p.opts.Observer.ObserveRegistryPoll(err)
	return err
}

// poll follows every model's alias once. The server turns ready when a poll
// ends with a version served, not after the first model's: a client sent
// to a ready replica finds every model the registry had for it.
func (p *Poller) poll(ctx context.Context) error {
	defer func() {
		if len(p.store.Models()) > 0 {
			p.opts.OnServe()
		}
	}()
	names := p.opts.Models
	if len(names) == 0 {
		var err error
		if names, err = p.client.RegisteredModels(ctx); err != nil {
			return err
		}
	}
	for _, name := range names {
		if !skl2go.ValidName(name) {
			if !p.absent[name] {
				p.absent[name] = true
				p.opts.Logger.Warn("registered model not served: not a valid model name (letters, digits, '_', '.', '-')", "model", name)
			}
			continue
		}
		mv, err := p.client.Alias(ctx, name, p.opts.Alias)
		if errors.Is(err, ErrNotFound) {
			if !p.absent[name] {
				p.absent[name] = true
				p.opts.Logger.Info("registered model has no such alias yet; nothing to serve", "model", name,
					"alias", p.opts.Alias)
			}
			continue
		}
		if err != nil {
			return err
		}
		delete(p.absent, name)
		if err := p.follow(ctx, mv); err != nil {
			return err
		}
		if err := p.experiment(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// refusal is a version that can never be served (as opposed to a registry
// that failed to deliver it).
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

// follow serves mv if it is not served already.
func (p *Poller) follow(ctx context.Context, mv ModelVersion) error {
	serving := p.serving(mv.Name)
	if serving != nil && serving.Version == mv.Version || p.refused[mv.Name] == mv.Version {
		return nil
	}
	if mv.Status != "" && mv.Status != "READY" {
		p.opts.Logger.Info("registry version not ready yet", "model", mv.Name, "version", mv.Version, "status", mv.Status)
		return nil
	}
	err := p.fetch(ctx, mv, serving)
	if err == nil {
		err = p.store.Serve(mv.Name, mv.Version)
		if err != nil {
			err = refusal{err}
		}
	}
	var r refusal
	if errors.As(err, &r) {
		p.refuse(mv, serving, r.err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("fetching %s version %d: %w", mv.Name, mv.Version, err)
	}
	p.served(mv)
	return nil
}

// serving is the metadata of the version of name served, or nil.
func (p *Poller) serving(name string) *skl2go.Metadata {
	m, release, err := p.store.Acquire(name, 0)
	if err != nil {
		return nil
	}
	defer release()
	return m.Metadata()
}

// fetch downloads mv's files into <cache>/<name>/<version>/ (a hidden
// directory renamed when complete), unless a complete copy is there.
// model.json's version becomes the registry's number. A version whose
// model.json names another model, or whose task or inputs differ from the
// version serving, is a refusal.
func (p *Poller) fetch(ctx context.Context, mv ModelVersion, serving *skl2go.Metadata) error {
	modelDir := filepath.Join(p.cache, mv.Name)
	dir := filepath.Join(modelDir, strconv.Itoa(mv.Version))
	if _, err := os.Stat(filepath.Join(dir, metadataFile)); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	uri, err := p.client.DownloadURI(ctx, mv.Name, mv.Version)
	if err != nil {
		return err
	}
	if _, err := proxyPath(uri); err != nil {
		return refusal{err}
	}
	var raw strings.Builder
	if _, err := p.client.Download(ctx, uri, metadataPath, &limitedWriter{w: &raw, n: maxMetadata}); err != nil {
		if errors.Is(err, ErrNotFound) {
			return refusal{fmt.Errorf("%s has no %s: register versions with `make export` (train/tracking.py)", uri, metadataPath)}
		}
		return err
	}
	meta, data, err := renumber([]byte(raw.String()), mv)
	if err != nil {
		return refusal{err}
	}
	if serving != nil {
		if err := compatible(serving, meta); err != nil {
			return refusal{err}
		}
	}
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(modelDir, ".incoming-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	onnxFile := filepath.Base(meta.Files.ONNX.Path)
	f, err := os.Create(filepath.Join(tmp, onnxFile))
	if err != nil {
		return err
	}
	_, err = p.client.Download(ctx, uri, onnxFile, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, ErrNotFound) {
		return refusal{fmt.Errorf("%s has no %s", uri, onnxFile)}
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, metadataFile), data, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// renumber checks a registered version's model.json and sets its version to
// the registry's number (the one answers, metadata and metrics show).
func renumber(data []byte, mv ModelVersion) (*skl2go.Metadata, []byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s of %s version %d is not valid JSON: %w", metadataFile, mv.Name, mv.Version, err)
	}
	doc["version"] = json.RawMessage(strconv.Itoa(mv.Version))
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	meta, err := skl2go.ParseMetadata(out)
	if err != nil {
		return nil, nil, fmt.Errorf("%s version %d: %w", mv.Name, mv.Version, err)
	}
	if meta.Name != mv.Name {
		return nil, nil, fmt.Errorf("%s of registered model %s version %d names the model %q",
			metadataFile, mv.Name, mv.Version, meta.Name)
	}
	return meta, append(out, '\n'), nil
}

// compatible refuses a version that would change what clients send or
// receive: another task, or other inputs (names and types, in order).
func compatible(serving, next *skl2go.Metadata) error {
	if serving.Task != next.Task {
		return fmt.Errorf("version %d is a %s model, version %d serving is a %s model",
			next.Version, next.Task, serving.Version, serving.Task)
	}
	describe := func(m *skl2go.Metadata) string {
		parts := make([]string, len(m.Inputs))
		for i, in := range m.Inputs {
			parts[i] = in.Name + " " + string(in.Type)
		}
		return strings.Join(parts, ", ")
	}
	if a, b := describe(serving), describe(next); a != b {
		return fmt.Errorf("version %d takes inputs (%s), version %d serving takes (%s)", next.Version, b, serving.Version, a)
	}
	return nil
}

func (p *Poller) refuse(mv ModelVersion, serving *skl2go.Metadata, err error) {
	p.refused[mv.Name] = mv.Version
	// A refused copy is not kept: a restart would only refuse it again.
	if serving == nil || serving.Version != mv.Version {
		os.RemoveAll(filepath.Join(p.cache, mv.Name, strconv.Itoa(mv.Version)))
	}
	keeps := "none"
	if serving != nil {
		keeps = strconv.Itoa(serving.Version)
	}
	p.opts.Logger.Error("registry version refused; the version serving keeps serving", "model", mv.Name,
		"version", mv.Version, "alias", p.opts.Alias, "err", err.Error(), "serving", keeps)
	p.opts.Observer.ObserveRegistryRefused(mv.Name, mv.Version)
}

// served records mv as the version to serve after a restart and removes
// the other cached versions of the model, but those the store serves.
func (p *Poller) served(mv ModelVersion) {
	modelDir := filepath.Join(p.cache, mv.Name)
	if err := writeFileAtomic(filepath.Join(modelDir, servingFile), []byte(strconv.Itoa(mv.Version)+"\n")); err != nil {
		p.opts.Logger.Warn("could not record the version served in the cache", "path", modelDir, "err", err.Error())
	} else {
		p.prune(mv.Name, map[int]bool{mv.Version: true})
	}
	p.opts.Logger.Info("serving the registry version", "model", mv.Name, "version", mv.Version, "alias", p.opts.Alias,
		"run_id", mv.RunID)
	p.opts.Observer.ObserveRegistryServed(mv.Name, mv.Version)
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// limitedWriter fails once more than n bytes are written.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > l.n {
		return 0, fmt.Errorf("%s larger than %d bytes", metadataFile, maxMetadata)
	}
	l.n -= int64(len(b))
	return l.w.Write(b)
}

type nopObserver struct{}

func (nopObserver) ObserveRegistryPoll(error)          {}
func (nopObserver) ObserveRegistryRefused(string, int) {}
func (nopObserver) ObserveRegistryServed(string, int)  {}
