package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"skl2go"
	"skl2go/mlflow"
	"skl2go/onnx"
	"skl2go/repository"
)

// The start-up both commands share: signals, ONNX Runtime, and the model
// store, read from a model repository or following an MLflow registry's
// alias. Each command keeps only what is its own (HTTP or Kafka).

// Signals returns ctx ended by SIGINT or SIGTERM, and the channel of SIGHUP,
// which reloads the models. SIGHUP is caught from the start: by default it
// would end the process, even while the models load. stop undoes both.
func Signals(ctx context.Context) (_ context.Context, reload <-chan os.Signal, stop func()) {
	ctx, stopNotify := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return ctx, hup, func() { signal.Stop(hup); stopNotify() }
}

// Runtime finds libonnxruntime.so (lib, or the nearest .venv's onnxruntime
// wheel when empty) and starts ONNX Runtime with threads intra-op threads.
func Runtime(lib string, threads int, logger *slog.Logger) (*onnx.Runtime, error) {
	path, err := onnx.FindLibrary(lib)
	if err != nil {
		return nil, err
	}
	runtime, err := onnx.NewRuntime(path, threads, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("onnx runtime ready", "version", runtime.Version(), "library", path, "intra_op_threads", threads)
	return runtime, nil
}

// Registry is what the --registry flags say: follow an MLflow registry's
// alias instead of reading a model repository.
type Registry struct {
	URL    string        // MLflow tracking server URL; empty: read the model repository
	Models []string      // registered models followed; empty: every one
	Alias  string        // the alias followed
	Poll   time.Duration // between polls of the registry
}

// RegistryFlags defines --registry, --registry-alias and --registry-poll
// into r, and --registry-models when models is true (a command that names
// its models otherwise sets r.Models itself). finish checks and converts
// their values once parsed.
func RegistryFlags(fs *flag.FlagSet, env func(name, def string) string, r *Registry, models bool) (finish func(*Checks)) {
	fs.StringVar(&r.URL, "registry", env("REGISTRY", ""),
		"MLflow tracking server `URL`: serve the versions its alias points to, cached in --models; credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and _PASSWORD (env SKL2GO_REGISTRY)")
	names := new(string)
	if models {
		names = fs.String("registry-models", env("REGISTRY_MODELS", ""), "registered models served, comma-separated (default: every one) (env SKL2GO_REGISTRY_MODELS)")
	}
	fs.StringVar(&r.Alias, "registry-alias", env("REGISTRY_ALIAS", "champion"), "the registry alias whose version is served (env SKL2GO_REGISTRY_ALIAS)")
	poll := fs.String("registry-poll", env("REGISTRY_POLL", "5s"), "how often to ask the registry where the alias points (env SKL2GO_REGISTRY_POLL)")
	return func(checks *Checks) {
		r.Poll = checks.Duration("registry-poll", *poll, 100*time.Millisecond)
		if models {
			r.Models = nil
			for _, name := range strings.Split(*names, ",") {
				if name = strings.TrimSpace(name); name == "" {
					continue
				} else if !skl2go.ValidName(name) {
					checks.Add(fmt.Errorf("--registry-models: %q is not a valid model name", name))
				}
				r.Models = append(r.Models, name)
			}
		}
		if r.Alias == "" {
			checks.Add(errors.New("--registry-alias must not be empty"))
		}
	}
}

// ModelsOptions configure OpenModels.
type ModelsOptions struct {
	Dir          string            // the model repository, or the registry's cache
	Keep         int               // versions of each model served from a repository
	PollInterval time.Duration     // between scans of the repository (0: only on SIGHUP)
	Load         repository.Loader // loads and checks a version
	Registry     Registry
	Getenv       func(string) string    // the registry's credentials
	Observer     func() mlflow.Observer // the registry poller's metrics, made only when following one
	Logger       *slog.Logger
}

// Models is the model store a command serves from, and what keeps it
// current: the repository's watcher, or the registry's poller.
type Models struct {
	Store *repository.Store

	opts   ModelsOptions
	client *mlflow.Client
	poller *mlflow.Poller
}

// OpenModels opens the store: with a registry, an empty store over its
// cache (Follow fills it); else the repository, every model loaded.
func OpenModels(opts ModelsOptions) (*Models, error) {
	m := &Models{opts: opts}
	if opts.Registry.URL == "" {
		store, err := repository.Open(opts.Dir, opts.Load, repository.Options{Keep: opts.Keep, Logger: opts.Logger})
		if err != nil {
			return nil, err
		}
		m.Store = store
		return m, nil
	}
	// The registry decides the versions; Dir is their local cache.
	client, err := mlflow.NewClient(opts.Registry.URL, opts.Getenv, nil)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry cache: %w", err)
	}
	m.client = client
	// Experiment aliases resolve as the poller (made by Follow) last heard from the registry.
	resolve := func(model, alias string) (int, error) {
		if m.poller == nil {
			return 0, fmt.Errorf("alias %q: the registry has not been asked yet", alias)
		}
		return m.poller.Resolve(model, alias)
	}
	m.Store = repository.New(opts.Dir, opts.Load, repository.Options{Logger: opts.Logger, ResolveAlias: resolve})
	return m, nil
}

// FromRegistry reports whether the versions come from a registry.
func (m *Models) FromRegistry() bool { return m.client != nil }

// Follow starts serving: from a repository, onServe is called at once (its
// models are loaded); from a registry, the versions the cache served last
// are served at once, then each version the alias points to as Watch
// fetches it, onServe called after each.
func (m *Models) Follow(onServe func()) {
	if m.client == nil {
		onServe()
		return
	}
	r := m.opts.Registry
	var observer mlflow.Observer
	if m.opts.Observer != nil {
		observer = m.opts.Observer()
	}
	m.poller = mlflow.NewPoller(m.client, m.Store, m.opts.Dir, mlflow.Options{Alias: r.Alias, Models: r.Models,
		Interval: r.Poll, Logger: m.opts.Logger, Observer: observer, OnServe: onServe})
	cached := m.poller.ServeCached()
	m.opts.Logger.Info("following the model registry", "registry", m.client.URL(), "alias", r.Alias,
		"models", r.Models, "poll", r.Poll.String(), "cache", m.opts.Dir, "cached_models", cached)
}

// Watch keeps the store current until ctx ends: it rescans the repository
// (every PollInterval, and on reload), or polls the registry (every
// Registry.Poll, and on reload). Follow must have been called.
func (m *Models) Watch(ctx context.Context, reload <-chan os.Signal) {
	if m.poller != nil {
		m.poller.Run(ctx, reload)
		return
	}
	m.Store.Watch(ctx, m.opts.PollInterval, reload)
}

// PollOnce asks the registry once for the versions its alias points to and
// serves them (a one-shot command has no time to Watch); from a repository
// it does nothing. Follow must have been called.
func (m *Models) PollOnce(ctx context.Context) error {
	if m.poller == nil {
		return nil
	}
	return m.poller.Poll(ctx)
}
