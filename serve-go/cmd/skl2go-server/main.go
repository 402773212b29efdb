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
	"skl2go/batching"
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
	batchMaxRows    int
	batchDelay      time.Duration
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
	batchRows := fs.String("batch-max-rows", env("BATCH_MAX_ROWS", strconv.Itoa(defaultBatchMaxRows)),
		"dynamic batching: most rows merged into one model run; 0 turns batching off (env SKL2GO_BATCH_MAX_ROWS)")
	batchDelay := fs.String("batch-delay", env("BATCH_DELAY", defaultBatchDelay.String()),
		"dynamic batching: how long a request may wait for others while the model is idle (env SKL2GO_BATCH_DELAY)")
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
	c.batchMaxRows = int(number("batch-max-rows", *batchRows, 0))
	delay, err := time.ParseDuration(*batchDelay)
	if err != nil || delay < 0 {
		errs = append(errs, fmt.Errorf("--batch-delay must be a duration such as 100us, got %q", *batchDelay))
	}
	c.batchDelay = delay
	d, err := time.ParseDuration(*timeout)
	if err != nil || d < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout must be a duration such as 20s, got %q", *timeout))
	}
	c.shutdownTimeout = d
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

// Dynamic batching defaults: see BENCHMARKS.md for the measurements behind
// them. Single-row requests from 16 clients on one replica: 15.6k req/s
// without batching, 14.0k batching only while runs are busy (delay 0),
// 22.1k with a 100µs delay (7 requests per run), 9.1k with 500µs (the
// clients wait). Requests of 64 rows or more run alone.
const (
	defaultBatchMaxRows = 64
	defaultBatchDelay   = 100 * time.Microsecond
)

// loader returns the one function that loads and checks a model version
// (onnx.Runtime.Load) and, when batching is on, wraps it with the batcher.
func loader(runtime *onnx.Runtime, c config, observer batching.Observer) func(repository.Entry) (skl2go.Model, error) {
	return func(e repository.Entry) (skl2go.Model, error) {
		m, err := runtime.Load(e.Dir, e.Metadata)
		if err != nil || c.batchMaxRows == 0 {
			return m, err
		}
		batched, err := batching.New(m, batching.Options{MaxRows: c.batchMaxRows, MaxDelay: c.batchDelay}, observer)
		if err != nil {
			m.Close()
			return nil, err
		}
		return batched, nil
	}
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

	lib, err := onnx.FindLibrary(c.ortLib)
	if err != nil {
		return err
	}
	runtime, err := onnx.NewRuntime(lib, c.ortThreads, logger)
	if err != nil {
		return err
	}
	defer runtime.Close()
	logger.Info("onnx runtime ready", "version", runtime.Version(), "library", lib, "intra_op_threads", c.ortThreads)

	registry := prometheus.NewRegistry()
	load := loader(runtime, c, skhttp.NewBatchMetrics(registry))
	logger.Info("dynamic batching", "enabled", c.batchMaxRows > 0, "max_rows", c.batchMaxRows, "delay", c.batchDelay.String())
	entries, err := repository.Latest(c.models)
	if err != nil {
		return err
	}
	var models []skl2go.Model
	for _, e := range entries {
		start := time.Now()
		m, err := load(e)
		if err != nil {
			for _, loaded := range models {
				loaded.Close()
			}
			return err
		}
		models = append(models, m)
		logger.Info("model loaded", "model", e.Metadata.Name, "version", e.Metadata.Version, "path", e.Dir,
			"inputs", len(e.Metadata.Inputs), "load_ms", time.Since(start).Milliseconds())
	}
	store := repository.NewStore(models...)
	defer store.Close()

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	server := skhttp.NewServer(store, skhttp.Config{MaxBodyBytes: c.maxBodyBytes, MaxRows: c.maxRows}, logger, registry)
	server.SetReady(true)
	logger.Info("listening", "addr", ln.Addr().String(), "models", len(models))

	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", c.shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}
