// Command skl2go-stream scores ride events from Kafka with the models of a
// model repository and produces the predictions to Kafka (package kafka).
// It loads models exactly as skl2go-server does (ONNX Runtime, the checks,
// hot reload, the limiter and the dynamic batcher); it only reads its
// configuration and wires the packages.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"skl2go"
	"skl2go/batching"
	"skl2go/events"
	skhttp "skl2go/http"
	"skl2go/internal/cli"
	"skl2go/kafka"
	"skl2go/kinesis"
	"skl2go/mlflow"
	"skl2go/repository"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "skl2go-stream:", err)
		os.Exit(1)
	}
}

type config struct {
	models       string
	names        []string
	kafka        kafka.Config
	variant      string
	metricsAddr  string
	ortLib       string
	ortThreads   int
	pollInterval time.Duration
	batch        batching.Options
	maxInflight  int
	logLevel     string
	logFormat    string
	kinesisEvent string
	registry     cli.Registry // empty URL: score with the model repository's versions
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
// once parsed. Each usage names its environment variable, "(env SKL2GO_…)",
// and, where the default is not one fixed value, "(default: …)":
// docs/streaming.md's table of flags is made from them (docgen.FlagTable).
func flagSet(c *config, getenv func(string) string) (fs *flag.FlagSet, finish func() error) {
	fs = flag.NewFlagSet("skl2go-stream", flag.ContinueOnError)
	env := cli.Env(getenv)
	fs.StringVar(&c.models, "models", env("MODELS", "models"), "model repository `dir` (env SKL2GO_MODELS)")
	names := fs.String("model", env("STREAM_MODEL", "trip_duration"), "the model(s) scoring the stream, comma-separated: each consumes every event, in its own consumer group (env SKL2GO_STREAM_MODEL)")
	brokers := fs.String("brokers", env("KAFKA", "127.0.0.1:9092"), "Kafka bootstrap `host:port`s, comma-separated (env SKL2GO_KAFKA)")
	fs.StringVar(&c.kafka.Input, "input", env("STREAM_INPUT", "rides"), "`topic` of ride events (env SKL2GO_STREAM_INPUT)")
	fs.StringVar(&c.kafka.Output, "output", env("STREAM_OUTPUT", "predictions"), "`topic` of predictions; {model} is replaced by the model name, for a topic per model (env SKL2GO_STREAM_OUTPUT)")
	fs.StringVar(&c.kafka.DeadLetter, "dead-letter", env("STREAM_DEAD_LETTER", ""), "`topic` of unscorable events, {model} as in --output (default: {input}.dlq) (env SKL2GO_STREAM_DEAD_LETTER)")
	fs.StringVar(&c.kafka.Group, "group", env("STREAM_GROUP", "skl2go-{model}"), "consumer `group`, {model} as in --output (env SKL2GO_STREAM_GROUP)")
	fs.StringVar(&c.variant, "variant", env("STREAM_VARIANT", ""), "label written as \"variant\" in every prediction (default: null) (env SKL2GO_STREAM_VARIANT)")
	maxPoll := fs.String("max-poll-records", env("STREAM_MAX_POLL_RECORDS", "1000"), "most events scored per batch (env SKL2GO_STREAM_MAX_POLL_RECORDS)")
	partitions := fs.String("partitions", env("STREAM_PARTITIONS", "4"), "partitions of the topics created when missing (env SKL2GO_STREAM_PARTITIONS)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", env("STREAM_METRICS_ADDR", "127.0.0.1:9180"), "loopback `address` of /metrics and /readyz (env SKL2GO_STREAM_METRICS_ADDR)")
	fs.StringVar(&c.ortLib, "ort-lib", env("ORT_LIB", ""), "libonnxruntime.so `path` (default: the nearest .venv's onnxruntime wheel) (env SKL2GO_ORT_LIB)")
	threads := fs.String("ort-threads", env("ORT_THREADS", "1"), "ONNX Runtime intra-op threads per model (env SKL2GO_ORT_THREADS)")
	poll := fs.String("poll-interval", env("POLL_INTERVAL", "5s"), "how often to look for new model versions; 0 = only on SIGHUP (env SKL2GO_POLL_INTERVAL)")
	inflight := fs.String("max-inflight", env("MAX_INFLIGHT", strconv.Itoa(goruntime.GOMAXPROCS(0))), "model runs at once (default: the cores) (env SKL2GO_MAX_INFLIGHT)")
	batchRows := fs.String("batch-max-rows", env("BATCH_MAX_ROWS", "64"), "dynamic batching: batches smaller than this from several consumers merge into one run; 0 turns it off (env SKL2GO_BATCH_MAX_ROWS)")
	registryFlags := cli.RegistryFlags(fs, env, &c.registry, false)
	fs.StringVar(&c.kinesisEvent, "kinesis-event", "", "the Lambda-style entry point: score this Kinesis event `file` (- for stdin) with the first --model, print the predictions as JSON, exit; no Kafka")
	fs.StringVar(&c.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env SKL2GO_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("LOG_FORMAT", "json"), "json or text (env SKL2GO_LOG_FORMAT)")
	finish = func() error {
		var checks cli.Checks
		number := checks.Int
		c.kafka.MaxPollRecords = int(number("max-poll-records", *maxPoll, 1))
		c.kafka.Partitions = int32(number("partitions", *partitions, 1))
		c.ortThreads = int(number("ort-threads", *threads, 1))
		c.maxInflight = int(number("max-inflight", *inflight, 1))
		c.batch.MaxRows = int(number("batch-max-rows", *batchRows, 0))
		c.pollInterval = checks.Duration("poll-interval", *poll, 0)
		c.kafka.Brokers = split(*brokers)
		c.names = split(*names)
		registryFlags(&checks)
		c.registry.Models = c.names // the registry models followed are the ones scoring the stream
		if len(c.kafka.Brokers) == 0 {
			checks.Add(errors.New("--brokers: at least one host:port"))
		}
		if len(c.names) == 0 {
			checks.Add(errors.New("--model: at least one model name"))
		}
		for _, n := range c.names {
			if !skl2go.ValidName(n) {
				checks.Add(fmt.Errorf("--model: %q is not a valid model name", n))
			}
		}
		if c.kafka.Input == "" {
			checks.Add(errors.New("--input: a topic name is required"))
		}
		if host, _, err := net.SplitHostPort(c.metricsAddr); err != nil || !loopback(host) {
			checks.Add(fmt.Errorf("--metrics-addr must be a loopback host:port, got %q", c.metricsAddr))
		}
		return checks.Err()
	}
	return fs, finish
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func newLogger(c config) (*slog.Logger, error) { return cli.NewLogger(c.logLevel, c.logFormat) }

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
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// No queue bound: a consumer waits for a run slot rather than be refused.
	limiter := skl2go.NewLimiter(c.maxInflight, 0, 0)
	load := batching.Loader(func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) },
		limiter, c.batch, skhttp.NewBatchMetrics(registry))
	models, err := cli.OpenModels(cli.ModelsOptions{Dir: c.models, Keep: 1, PollInterval: c.pollInterval, Load: load,
		Registry: c.registry, Getenv: getenv, Observer: func() mlflow.Observer { return skhttp.NewRegistryMetrics(registry) }, Logger: logger})
	if err != nil {
		return err
	}
	store := models.Store
	defer runtime.Close()
	defer store.Close()
	// From a registry the versions arrive as the poller fetches them: until
	// then the scorers wait (the model is not served yet), nothing is lost.
	var served atomic.Bool
	models.Follow(func() { served.Store(true) })
	if !models.FromRegistry() {
		for _, name := range c.names {
			if _, release, err := store.Acquire(name, 0); err != nil {
				return fmt.Errorf("--model %s: %s", name, skl2go.ErrorMessage(err))
			} else {
				release()
			}
		}
	}

	if c.kinesisEvent != "" {
		if err := models.PollOnce(ctx); err != nil {
			return err
		}
		return handleKinesis(ctx, c, &events.Scorer{Store: store, Model: c.names[0], Variant: c.variant, Logger: logger})
	}

	metrics := kafka.NewMetrics(registry)
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() || !served.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", c.metricsAddr)
	if err != nil {
		return err
	}
	metricsServer := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go metricsServer.Serve(ln)
	defer metricsServer.Close()

	consumers := make([]*kafka.Consumer, 0, len(c.names))
	for _, name := range c.names {
		cfg := c.kafka
		scorer := &events.Scorer{Store: store, Model: name, Variant: c.variant, Logger: logger}
		consumer, err := kafka.NewConsumer(cfg, scorer, metrics, logger)
		if err != nil {
			return err
		}
		setup, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = consumer.EnsureTopics(setup)
		cancel()
		if err != nil {
			return err
		}
		consumers = append(consumers, consumer)
	}

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go models.Watch(watchCtx, reload)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(consumers))
	for i, consumer := range consumers {
		wg.Go(func() {
			if errs[i] = consumer.Run(runCtx); errs[i] != nil {
				cancel() // one consumer failing stops them all: the process restarts as a whole
			}
		})
	}
	ready.Store(true)
	logger.Info("stream consumer ready", "models", c.names, "brokers", c.kafka.Brokers, "metrics", ln.Addr().String(),
		"batch_max_rows", c.batch.MaxRows, "poll_interval", c.pollInterval.String(), "registry", c.registry.URL)
	wg.Wait()
	ready.Store(false)
	return errors.Join(errs...)
}

// handleKinesis scores one Kinesis event as a Lambda function would and
// prints the response.
func handleKinesis(ctx context.Context, c config, scorer *events.Scorer) error {
	var payload []byte
	var err error
	if c.kinesisEvent == "-" {
		payload, err = io.ReadAll(os.Stdin)
	} else {
		payload, err = os.ReadFile(c.kinesisEvent)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := kinesis.Handle(ctx, scorer, payload)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(resp)
}
