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
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	"skl2go/apikey"
	"skl2go/batching"
	skgrpc "skl2go/grpc"
	skhttp "skl2go/http"
	"skl2go/inferencelog"
	"skl2go/internal/cli"
	"skl2go/mlflow"
	"skl2go/onnx"
	"skl2go/repository"
)

func main() {
	// The live Go heap is a few MB (models live in ONNX Runtime's memory),
	// so Go's default GOGC of 100 collects every few hundred requests and
	// each collection's fixed cost shows per request; 400 collects about a
	// fifth as often for some MB more. A GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if err := run(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "skl2go-server:", err)
		os.Exit(1)
	}
}

type config struct {
	models           string
	addr             string
	grpcAddr         string // the gRPC listener; empty: none
	grpcReflection   bool
	allowNonLoopback bool
	ortLib           string
	apiKeys          string
	ortThreads       int
	http             skhttp.Config // body and row limits, timeouts
	maxInflight      int
	maxQueue         int
	queueTimeout     time.Duration
	shutdownTimeout  time.Duration
	pollInterval     time.Duration
	versionsKept     int
	batchMaxRows     int
	batchDelay       time.Duration
	check            bool
	logLevel         string
	logFormat        string
	registry         cli.Registry // empty URL: serve the model repository
	inferenceLog     inferencelog.Options
	inferenceLogRate float64
	actualsTokenFile string
}

// parseFlags reads flags, each defaulting to its SKL2GO_* environment variable.
func parseFlags(args []string, getenv func(string) string) (config, error) {
	var c config
	fs, finish := flagSet(&c, getenv)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, finish()
}

// flagSet defines the flags into c; finish checks and converts their values
// once parsed. Each flag's usage names its environment variable, "(env
// SKL2GO_…)", and, where the default is not one fixed value, "(default:
// …)": docs/server.md's table of flags is made from them.
func flagSet(c *config, getenv func(string) string) (fs *flag.FlagSet, finish func() error) {
	fs = flag.NewFlagSet("skl2go-server", flag.ContinueOnError)
	env := cli.Env(getenv)
	fs.StringVar(&c.models, "models", env("MODELS", "models"), "model repository `dir` (env SKL2GO_MODELS)")
	fs.StringVar(&c.addr, "addr", env("ADDR", "127.0.0.1:9001"), "listen `address`, on loopback (env SKL2GO_ADDR)")
	fs.StringVar(&c.grpcAddr, "grpc-addr", env("GRPC_ADDR", ""), "gRPC listen `address` (Open Inference Protocol, KServe V2), on loopback (default: none, gRPC off) (env SKL2GO_GRPC_ADDR)")
	grpcReflection := fs.String("grpc-reflection", env("GRPC_REFLECTION", "false"), "register the gRPC reflection service, for grpcurl (env SKL2GO_GRPC_REFLECTION)")
	allow := fs.String("allow-non-loopback", env("ALLOW_NON_LOOPBACK", "false"), "allow an --addr that is not loopback, as in a container network behind nginx (env SKL2GO_ALLOW_NON_LOOPBACK)")
	fs.StringVar(&c.apiKeys, "api-keys", env("API_KEYS", ""), "API key `file` GET /auth checks for nginx (default: none, keys off) (env SKL2GO_API_KEYS)")
	fs.StringVar(&c.ortLib, "ort-lib", env("ORT_LIB", ""), "libonnxruntime.so `path` (default: the nearest .venv's onnxruntime wheel) (env SKL2GO_ORT_LIB)")
	threads := fs.String("ort-threads", env("ORT_THREADS", "1"), "ONNX Runtime intra-op threads per model (env SKL2GO_ORT_THREADS)")
	maxBody := fs.String("max-body-bytes", env("MAX_BODY_BYTES", strconv.Itoa(32<<20)), "largest request body (env SKL2GO_MAX_BODY_BYTES)")
	maxRows := fs.String("max-rows", env("MAX_ROWS", "100000"), "most instances per request (env SKL2GO_MAX_ROWS)")
	inflight := fs.String("max-inflight", env("MAX_INFLIGHT", strconv.Itoa(goruntime.GOMAXPROCS(0))), "predictions run at once (default: the cores) (env SKL2GO_MAX_INFLIGHT)")
	queue := fs.String("max-queue", env("MAX_QUEUE", "4096"), "hard cap on predictions waiting for a slot or a batched run, a bound on memory; more get 503 (env SKL2GO_MAX_QUEUE)")
	queueTimeout := fs.String("queue-timeout", env("QUEUE_TIMEOUT", "1s"), "deadline of a waiting prediction: with batching, one whose estimated wait exceeds it gets 503 at once; any still waiting after it gets 503; one that reaches the replica later than this after nginx passed it on (X-Request-Start) gets 503 before its body is read (env SKL2GO_QUEUE_TIMEOUT)")
	headerTimeout := fs.String("read-header-timeout", env("READ_HEADER_TIMEOUT", "5s"), "time to read a request's headers (env SKL2GO_READ_HEADER_TIMEOUT)")
	readTimeout := fs.String("read-timeout", env("READ_TIMEOUT", "30s"), "time to read a whole request (env SKL2GO_READ_TIMEOUT)")
	writeTimeout := fs.String("write-timeout", env("WRITE_TIMEOUT", "60s"), "time to answer, after the request's headers (env SKL2GO_WRITE_TIMEOUT)")
	idleTimeout := fs.String("idle-timeout", env("IDLE_TIMEOUT", "120s"), "time a keep-alive connection may stay idle (env SKL2GO_IDLE_TIMEOUT)")
	shutdown := fs.String("shutdown-timeout", env("SHUTDOWN_TIMEOUT", "20s"), "time for in-flight requests at shutdown (env SKL2GO_SHUTDOWN_TIMEOUT)")
	poll := fs.String("poll-interval", env("POLL_INTERVAL", "5s"), "how often to look for new model versions; 0 = only on SIGHUP (env SKL2GO_POLL_INTERVAL)")
	kept := fs.String("versions-kept", env("VERSIONS_KEPT", "1"), "versions of each model served: the latest N that load (env SKL2GO_VERSIONS_KEPT)")
	batchRows := fs.String("batch-max-rows", env("BATCH_MAX_ROWS", strconv.Itoa(defaultBatchMaxRows)),
		"dynamic batching: most rows merged into one model run; 0 turns batching off (env SKL2GO_BATCH_MAX_ROWS)")
	batchDelay := fs.String("batch-delay", env("BATCH_DELAY", defaultBatchDelay.String()),
		"dynamic batching: how long a run may wait for more requests when they come that close together (env SKL2GO_BATCH_DELAY)")
	registryFlags := cli.RegistryFlags(fs, env, &c.registry, true)
	fs.StringVar(&c.inferenceLog.Dir, "inference-log", env("INFERENCE_LOG", ""),
		"inference log `dir`: this replica's own, it writes inference-<UTC time>.jsonl files there; the records' source is skl2go/<the dir's name>; {hostname} in it is the host's name (a container's, for replicas sharing a volume) (default: none, log off) (env SKL2GO_INFERENCE_LOG)")
	logRate := fs.String("inference-log-rate", env("INFERENCE_LOG_RATE", "0"), "share of inferences written to the inference log, 0 to 1 (env SKL2GO_INFERENCE_LOG_RATE)")
	logMaxBytes := fs.String("inference-log-max-bytes", env("INFERENCE_LOG_MAX_BYTES", strconv.Itoa(64<<20)), "inference log: a new file before one grows past this size (env SKL2GO_INFERENCE_LOG_MAX_BYTES)")
	logMaxAge := fs.String("inference-log-max-age", env("INFERENCE_LOG_MAX_AGE", "1h"), "inference log: a new file once the current one is this old (env SKL2GO_INFERENCE_LOG_MAX_AGE)")
	logMaxFiles := fs.String("inference-log-max-files", env("INFERENCE_LOG_MAX_FILES", "24"), "inference log: files kept, the oldest deleted beyond (env SKL2GO_INFERENCE_LOG_MAX_FILES)")
	logQueue := fs.String("inference-log-queue", env("INFERENCE_LOG_QUEUE", "4096"), "inference log: records waiting for the writer; beyond, records are dropped and counted, requests never wait (env SKL2GO_INFERENCE_LOG_QUEUE)")
	fs.StringVar(&c.actualsTokenFile, "actuals-token-file", env("ACTUALS_TOKEN_FILE", ""),
		"`file` holding the bearer token POST /v1/models/{name}/actuals requires; needs --inference-log (default: none, ground truth refused) (env SKL2GO_ACTUALS_TOKEN_FILE)")
	shadowQueue := fs.String("shadow-queue", env("SHADOW_QUEUE", "64"), "experiment mirror runs that may wait; more are dropped, never waited for (docs/experiments.md) (env SKL2GO_SHADOW_QUEUE)")
	fs.BoolVar(&c.check, "check", false, "load and check every model version that would be served, then exit (0 if all load)")
	fs.StringVar(&c.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env SKL2GO_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("LOG_FORMAT", "json"), "json or text (env SKL2GO_LOG_FORMAT)")
	finish = func() error {
		var checks cli.Checks
		number, duration := checks.Int, checks.Duration
		c.ortThreads = int(number("ort-threads", *threads, 1))
		c.http.MaxBodyBytes = number("max-body-bytes", *maxBody, 1)
		c.http.MaxRows = int(number("max-rows", *maxRows, 1))
		c.http.ShadowQueue = int(number("shadow-queue", *shadowQueue, 1))
		c.maxInflight = int(number("max-inflight", *inflight, 1))
		c.maxQueue = int(number("max-queue", *queue, 0))
		c.versionsKept = int(number("versions-kept", *kept, 1))
		c.batchMaxRows = int(number("batch-max-rows", *batchRows, 0))
		c.batchDelay = duration("batch-delay", *batchDelay, 0)
		c.queueTimeout = duration("queue-timeout", *queueTimeout, 0)
		c.http.ReadHeaderTimeout = duration("read-header-timeout", *headerTimeout, time.Millisecond)
		c.http.ReadTimeout = duration("read-timeout", *readTimeout, time.Millisecond)
		c.http.WriteTimeout = duration("write-timeout", *writeTimeout, time.Millisecond)
		c.http.IdleTimeout = duration("idle-timeout", *idleTimeout, time.Millisecond)
		c.shutdownTimeout = duration("shutdown-timeout", *shutdown, 0)
		c.pollInterval = duration("poll-interval", *poll, 0)
		c.inferenceLog.MaxBytes = number("inference-log-max-bytes", *logMaxBytes, 4096)
		c.inferenceLog.MaxAge = duration("inference-log-max-age", *logMaxAge, time.Second)
		c.inferenceLog.MaxFiles = int(number("inference-log-max-files", *logMaxFiles, 1))
		c.inferenceLog.Queue = int(number("inference-log-queue", *logQueue, 1))
		rate, err := strconv.ParseFloat(*logRate, 64)
		if err != nil || !(rate >= 0 && rate <= 1) {
			checks.Add(fmt.Errorf("--inference-log-rate must be a number from 0 to 1 (the share of inferences logged), got %q", *logRate))
		}
		c.inferenceLogRate = rate
		if c.inferenceLog.Dir == "" && rate > 0 {
			checks.Add(errors.New("--inference-log-rate needs --inference-log DIR, the directory to write to"))
		}
		if c.inferenceLog.Dir == "" && c.actualsTokenFile != "" {
			checks.Add(errors.New("--actuals-token-file needs --inference-log DIR: ground truth is written there"))
		}
		registryFlags(&checks)
		if c.registry.URL != "" && c.check {
			checks.Add(errors.New("--check reads a model repository; with --registry the versions come from the registry"))
		}
		if c.allowNonLoopback, err = strconv.ParseBool(*allow); err != nil {
			checks.Add(fmt.Errorf("--allow-non-loopback must be true or false, got %q", *allow))
		}
		if err := checkAddr("--addr", c.addr, c.allowNonLoopback); err != nil {
			checks.Add(err)
		}
		if c.grpcReflection, err = strconv.ParseBool(*grpcReflection); err != nil {
			checks.Add(fmt.Errorf("--grpc-reflection must be true or false, got %q", *grpcReflection))
		}
		if c.grpcAddr != "" {
			if err := checkAddr("--grpc-addr", c.grpcAddr, c.allowNonLoopback); err != nil {
				checks.Add(err)
			}
		}
		return checks.Err()
	}
	return fs, finish
}

// checkAddr refuses to listen beyond loopback unless allowed: replicas sit
// behind nginx, the only listener meant to face a network.
func checkAddr(flag, addr string, allowNonLoopback bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s must be host:port, got %q", flag, addr)
	}
	if allowNonLoopback || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("%s %s listens on %s, not loopback: replicas serve nginx on the same host "+
		"(pass --allow-non-loopback, or SKL2GO_ALLOW_NON_LOOPBACK=true, where nginx reaches them over a private network, as in docker-compose.yml)",
		flag, addr, host)
}

func newLogger(c config) (*slog.Logger, error) { return cli.NewLogger(c.logLevel, c.logFormat) }

// Dynamic batching defaults, measured on the 2-core machine (BENCHMARKS.md).
// Without a delay a run first lets the goroutines that are ready go (their
// requests join it), then takes what has queued: single rows through nginx
// under wrk went from 14.3-15.6k to 16.8-21.3k req/s, p99 from 10-15 to
// 4-7 ms, and it costs nothing at low load. A 300µs delay did no better
// (17.2-18.7k) and halved a 16-user Locust run: a sub-millisecond timer
// fires about 1 ms late on a replica with nothing else to do. Requests of
// 64 rows or more run alone.
const (
	defaultBatchMaxRows = 64
	defaultBatchDelay   = time.Duration(0)
)

// loader returns the one function that loads and checks a model version
// (onnx.Runtime.Load), with the limiter and the batcher in front: merged
// runs take the limiter's slots, and requests waiting in the batcher are shed
// by their estimated wait against --queue-timeout, with --max-queue as a hard cap.
func loader(runtime *onnx.Runtime, limiter *skl2go.Limiter, c config, observer batching.Observer) repository.Loader {
	load := func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) }
	return batching.Loader(load, limiter, batching.Options{MaxRows: c.batchMaxRows, MaxDelay: c.batchDelay,
		MaxQueue: c.maxQueue, MaxWait: c.queueTimeout}, observer)
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
	ctx, reload, stop := cli.Signals(ctx)
	defer stop()

	runtime, err := cli.Runtime(c.ortLib, c.ortThreads, logger)
	if err != nil {
		return err
	}
	// runtime.Close comes after every model is closed; on an error exit the
	// process ends with ONNX Runtime still initialised, which is harmless.

	// The one way a version is loaded and checked, at start-up and on reload.
	// Every model shares one bound on the predictions running at once.
	limiter := skl2go.NewLimiter(c.maxInflight, c.maxQueue, c.queueTimeout)
	registry := prometheus.NewRegistry()
	batchMetrics := skhttp.NewBatchMetrics(registry)
	load := loader(runtime, limiter, c, batchMetrics)
	logger.Info("dynamic batching", "enabled", c.batchMaxRows > 0, "max_rows", c.batchMaxRows, "delay", c.batchDelay.String())
	models, err := cli.OpenModels(cli.ModelsOptions{Dir: c.models, Keep: c.versionsKept, PollInterval: c.pollInterval,
		Load: load, Registry: c.registry, Getenv: getenv, Observer: func() mlflow.Observer { return skhttp.NewRegistryMetrics(registry) }, Logger: logger})
	if err != nil {
		return err
	}
	store := models.Store
	if c.check {
		loaded := store.Models()
		store.Close()
		runtime.Close()
		for _, m := range loaded {
			fmt.Printf("%s: %s versions %v load and reproduce their examples\n", c.models, m.Name, m.Versions)
		}
		return nil
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	c.http.Limiter = limiter
	c.http.Deadline, c.http.Late = c.queueTimeout, batchMetrics.ObserveLate
	if c.apiKeys != "" {
		keys, err := apikey.Open(c.apiKeys)
		if err != nil {
			return err
		}
		c.http.Keys = keys
	}
	sink, err := openInferenceLog(&c, logger)
	if err != nil {
		ln.Close()
		return err
	}
	server := skhttp.NewServer(store, c.http, logger, registry)
	var (
		grpcServer *skgrpc.Server
		grpcLn     net.Listener
	)
	if c.grpcAddr != "" {
		if grpcLn, err = net.Listen("tcp", c.grpcAddr); err != nil {
			ln.Close()
			return fmt.Errorf("--grpc-addr: %w", err)
		}
		grpcServer = skgrpc.NewServer(store, skgrpc.Config{MaxMessageBytes: int(min(c.http.MaxBodyBytes, 1<<31-1)),
			MaxRows: c.http.MaxRows, Reflection: c.grpcReflection, Version: server.Version()}, logger, server)
	}
	// From a registry: ready once a version is served (from the cache at
	// once, else as soon as the registry delivers one), and ready for good:
	// a registry down later changes nothing for the clients.
	models.Follow(func() {
		server.SetReady(true)
		if grpcServer != nil {
			grpcServer.SetReady(true)
		}
	})
	logger.Info("listening", "addr", ln.Addr().String(), "models", store.Models(),
		"poll_interval", c.pollInterval.String(), "versions_kept", c.versionsKept,
		"max_inflight", c.maxInflight, "max_queue", c.maxQueue)

	watchCtx, stopWatching := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { defer close(watching); models.Watch(watchCtx, reload) }()

	served := make(chan error, 2)
	go func() { served <- server.Serve(ln) }()
	if grpcServer != nil {
		logger.Info("listening for gRPC", "addr", grpcLn.Addr().String(), "reflection", c.grpcReflection)
		go func() { served <- grpcServer.Serve(grpcLn) }()
	}
	select {
	case err = <-served:
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", c.shutdownTimeout.String())
		shutdownCtx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
		defer cancel()
		// Both transports drain at once, within the one timeout.
		grpcDone := make(chan error, 1)
		go func() {
			if grpcServer == nil {
				grpcDone <- nil
				return
			}
			grpcDone <- grpcServer.Shutdown(shutdownCtx)
		}()
		if err = server.Shutdown(shutdownCtx); err != nil {
			err = fmt.Errorf("shutdown: %w", err)
		}
		if gerr := <-grpcDone; gerr != nil && err == nil {
			err = fmt.Errorf("grpc shutdown: %w", gerr)
		}
	}
	stopWatching()
	<-watching
	if sink != nil {
		// In-flight requests are answered: what they logged is queued.
		drainCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if closeErr := sink.Close(drainCtx); closeErr != nil {
			logger.Error("inference log", "err", closeErr)
		}
		cancel()
	}
	if err != nil {
		// Requests may still hold models: exit without closing them.
		return err
	}
	store.Close()
	runtime.Close()
	logger.Info("stopped")
	return nil
}

// openInferenceLog opens the inference log sink of --inference-log (nil
// when off) and reads the actuals token, setting both in c.http.
func openInferenceLog(c *config, logger *slog.Logger) (*inferencelog.Sink, error) {
	if c.inferenceLog.Dir == "" {
		return nil, nil
	}
	if c.actualsTokenFile != "" {
		data, err := os.ReadFile(c.actualsTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--actuals-token-file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" || strings.ContainsAny(token, " \t\r\n") {
			return nil, fmt.Errorf("--actuals-token-file %s must hold one token, on one line", c.actualsTokenFile)
		}
		c.http.ActualsToken = token
	}
	if strings.Contains(c.inferenceLog.Dir, "{hostname}") {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--inference-log %s: %w", c.inferenceLog.Dir, err)
		}
		c.inferenceLog.Dir = strings.ReplaceAll(c.inferenceLog.Dir, "{hostname}", host)
	}
	c.inferenceLog.Logger = logger
	sink, err := inferencelog.Open(c.inferenceLog)
	if err != nil {
		return nil, err
	}
	c.http.InferenceLog, c.http.InferenceLogRate = sink, c.inferenceLogRate
	logger.Info("inference log", "dir", c.inferenceLog.Dir, "rate", c.inferenceLogRate, "source", sink.Source(),
		"max_bytes", c.inferenceLog.MaxBytes, "max_age", c.inferenceLog.MaxAge.String(), "max_files", c.inferenceLog.MaxFiles,
		"queue", c.inferenceLog.Queue, "actuals", c.http.ActualsToken != "")
	return sink, nil
}
