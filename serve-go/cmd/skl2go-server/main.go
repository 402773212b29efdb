// Command skl2go-server serves the models of a model repository over HTTP
// with ONNX Runtime. It only reads its configuration and wires the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/onnx"
	"skl2go/repository"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "skl2go-server:", err)
		os.Exit(1)
	}
}

type config struct {
	models          string
	addr            string
	ortLib          string
	ortThreads      int
	maxBodyBytes    int64
	maxRows         int
	shutdownTimeout time.Duration
	pollInterval    time.Duration
	versionsKept    int
	check           bool
	logLevel        string
	logFormat       string
}

// parseFlags reads flags, each defaulting to its SKL2GO_* environment variable.
func parseFlags(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("skl2go-server", flag.ContinueOnError)
	env := func(name, def string) string {
		if v := getenv("SKL2GO_" + name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.models, "models", env("MODELS", "models"), "model repository `dir` (env SKL2GO_MODELS)")
	fs.StringVar(&c.addr, "addr", env("ADDR", "127.0.0.1:9001"), "listen `address` (env SKL2GO_ADDR)")
	fs.StringVar(&c.ortLib, "ort-lib", env("ORT_LIB", ""), "libonnxruntime.so `path` (env SKL2GO_ORT_LIB; default: the .venv's onnxruntime wheel)")
	threads := fs.String("ort-threads", env("ORT_THREADS", "1"), "ONNX Runtime intra-op threads per model (env SKL2GO_ORT_THREADS)")
	maxBody := fs.String("max-body-bytes", env("MAX_BODY_BYTES", strconv.Itoa(32<<20)), "largest request body (env SKL2GO_MAX_BODY_BYTES)")
	maxRows := fs.String("max-rows", env("MAX_ROWS", "100000"), "most instances per request (env SKL2GO_MAX_ROWS)")
	timeout := fs.String("shutdown-timeout", env("SHUTDOWN_TIMEOUT", "20s"), "time for in-flight requests at shutdown (env SKL2GO_SHUTDOWN_TIMEOUT)")
	poll := fs.String("poll-interval", env("POLL_INTERVAL", "5s"), "how often to look for new model versions; 0 = only on SIGHUP (env SKL2GO_POLL_INTERVAL)")
	kept := fs.String("versions-kept", env("VERSIONS_KEPT", "1"), "versions of each model served: the latest N that load (env SKL2GO_VERSIONS_KEPT)")
	fs.BoolVar(&c.check, "check", false, "load and check every model version that would be served, then exit (0 if all load)")
	fs.StringVar(&c.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env SKL2GO_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("LOG_FORMAT", "json"), "json or text (env SKL2GO_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	number := func(name, s string, min int64) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < min {
			errs = append(errs, fmt.Errorf("--%s must be an integer of at least %d, got %q", name, min, s))
		}
		return n
	}
	c.ortThreads = int(number("ort-threads", *threads, 1))
	c.maxBodyBytes = number("max-body-bytes", *maxBody, 1)
	c.maxRows = int(number("max-rows", *maxRows, 1))
	c.versionsKept = int(number("versions-kept", *kept, 1))
	duration := func(name, s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("--%s must be a duration such as 20s, got %q", name, s))
		}
		return d
	}
	c.shutdownTimeout = duration("shutdown-timeout", *timeout)
	c.pollInterval = duration("poll-interval", *poll)
	return c, errors.Join(errs...)
}

func newLogger(c config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.logFormat) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, got %q", c.logFormat)
}

func run(ctx context.Context, args []string, getenv func(string) string) error {
	c, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the repository. Caught from the start: by default it
	// would end the process, even while the models load.
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)

	lib, err := onnx.FindLibrary(c.ortLib)
	if err != nil {
		return err
	}
	runtime, err := onnx.NewRuntime(lib, c.ortThreads, logger)
	if err != nil {
		return err
	}
	// runtime.Close comes after every model is closed; on an error exit the
	// process ends with ONNX Runtime still initialised, which is harmless.
	logger.Info("onnx runtime ready", "version", runtime.Version(), "library", lib, "intra_op_threads", c.ortThreads)

	// The one way a version is loaded and checked, at start-up and on reload.
	load := func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) }
	store, err := repository.Open(c.models, load, repository.Options{Keep: c.versionsKept, Logger: logger})
	if err != nil {
		return err
	}
	if c.check {
		models := store.Models()
		store.Close()
		runtime.Close()
		for _, m := range models {
			fmt.Printf("%s: %s versions %v load and reproduce their examples\n", c.models, m.Name, m.Versions)
		}
		return nil
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	server := skhttp.NewServer(store, skhttp.Config{MaxBodyBytes: c.maxBodyBytes, MaxRows: c.maxRows}, logger, prometheus.NewRegistry())
	server.SetReady(true)
	logger.Info("listening", "addr", ln.Addr().String(), "models", store.Models(),
		"poll_interval", c.pollInterval.String(), "versions_kept", c.versionsKept)

	watchCtx, stopWatching := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { defer close(watching); store.Watch(watchCtx, c.pollInterval, reload) }()

	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", c.shutdownTimeout.String())
		shutdownCtx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
		defer cancel()
		if err = server.Shutdown(shutdownCtx); err != nil {
			err = fmt.Errorf("shutdown: %w", err)
		}
	}
	stopWatching()
	<-watching
	if err != nil {
		// Requests may still hold models: exit without closing them.
		return err
	}
	store.Close()
	runtime.Close()
	logger.Info("stopped")
	return nil
}
