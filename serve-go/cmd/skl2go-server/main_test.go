package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	skhttp "skl2go/http"
	"skl2go/inferencelog"
)

// defaults is the configuration with no flag and no environment, edited.
func defaults(edit func(*config)) config {
	c := config{models: "models", addr: "127.0.0.1:9001", ortThreads: 1,
		http: skhttp.Config{MaxBodyBytes: 32 << 20, MaxRows: 100000, ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second},
		maxInflight: goruntime.GOMAXPROCS(0), maxQueue: 4096, queueTimeout: time.Second,
		shutdownTimeout: 20 * time.Second, pollInterval: 5 * time.Second, versionsKept: 1,
		batchMaxRows: defaultBatchMaxRows, batchDelay: defaultBatchDelay, logLevel: "info", logFormat: "json",
		registryAlias: "champion", registryPoll: 5 * time.Second,
		inferenceLog: inferencelog.Options{MaxBytes: 64 << 20, MaxAge: time.Hour, MaxFiles: 24, Queue: 4096}}
	edit(&c)
	return c
}

func TestParseFlags(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want config
		err  string
	}{
		{name: "defaults", want: defaults(func(*config) {})},
		{name: "environment", env: map[string]string{"SKL2GO_ADDR": "127.0.0.1:9002", "SKL2GO_ORT_THREADS": "2", "SKL2GO_MODELS": "/m"},
			want: defaults(func(c *config) { c.addr, c.ortThreads, c.models = "127.0.0.1:9002", 2, "/m" })},
		{name: "flags win over environment", args: []string{"--addr", "127.0.0.1:9003", "--max-rows", "5"},
			env:  map[string]string{"SKL2GO_ADDR": "127.0.0.1:9002"},
			want: defaults(func(c *config) { c.addr, c.http.MaxRows = "127.0.0.1:9003", 5 })},
		{name: "bad numbers", args: []string{"--ort-threads", "0", "--max-rows", "many"}, err: "--ort-threads must be an integer of at least 1"},
		{name: "bad duration", args: []string{"--shutdown-timeout", "soon"}, err: `--shutdown-timeout must be a duration of at least 0s such as 20s, got "soon"`},
		{name: "roll-out settings", args: []string{"--poll-interval", "0", "--versions-kept", "3"},
			want: defaults(func(c *config) { c.pollInterval, c.versionsKept = 0, 3 })},
		{name: "bad roll-out settings", args: []string{"--poll-interval", "-1s", "--versions-kept", "0"},
			err: `--versions-kept must be an integer of at least 1, got "0"` + "\n" + `--poll-interval must be a duration of at least 0s such as 20s, got "-1s"`},
		{name: "limits and timeouts", args: []string{"--max-inflight", "3", "--max-queue", "0", "--queue-timeout", "50ms",
			"--read-header-timeout", "1s", "--read-timeout", "2s", "--write-timeout", "3s", "--idle-timeout", "4s"},
			want: defaults(func(c *config) {
				c.maxInflight, c.maxQueue, c.queueTimeout = 3, 0, 50*time.Millisecond
				c.http.ReadHeaderTimeout, c.http.ReadTimeout, c.http.WriteTimeout, c.http.IdleTimeout = time.Second, 2*time.Second, 3*time.Second, 4*time.Second
			})},
		{name: "batching", args: []string{"--batch-delay", "150us"}, env: map[string]string{"SKL2GO_BATCH_MAX_ROWS": "0"},
			want: defaults(func(c *config) { c.batchMaxRows, c.batchDelay = 0, 150*time.Microsecond })},
		{name: "bad batching", args: []string{"--batch-max-rows", "-1", "--batch-delay", "-1ms"},
			err: `--batch-max-rows must be an integer of at least 0, got "-1"` + "\n" + `--batch-delay must be a duration of at least 0s such as 20s, got "-1ms"`},
		{name: "a timeout of zero would mean none", args: []string{"--read-header-timeout", "0"},
			err: `--read-header-timeout must be a duration of at least 1ms such as 20s, got "0"`},
		{name: "loopback by name", args: []string{"--addr", "localhost:9001"}, want: defaults(func(c *config) { c.addr = "localhost:9001" })},
		{name: "IPv6 loopback", args: []string{"--addr", "[::1]:9001"}, want: defaults(func(c *config) { c.addr = "[::1]:9001" })},
		{name: "every interface refused", args: []string{"--addr", ":9001"}, err: "--addr :9001 listens on every interface, not loopback"},
		{name: "public address refused", args: []string{"--addr", "0.0.0.0:9000"}, err: "--addr 0.0.0.0:9000 listens on 0.0.0.0, not loopback"},
		{name: "a host name refused", args: []string{"--addr", "example.com:9000"}, err: "not loopback"},
		{name: "not host:port", args: []string{"--addr", "9001"}, err: `--addr must be host:port, got "9001"`},
		{name: "non-loopback allowed (the container image)", env: map[string]string{"SKL2GO_ADDR": "0.0.0.0:9000", "SKL2GO_ALLOW_NON_LOOPBACK": "true"},
			want: defaults(func(c *config) { c.addr, c.allowNonLoopback = "0.0.0.0:9000", true })},
		{name: "allow flag must be a boolean", args: []string{"--allow-non-loopback", "yes please"}, err: `--allow-non-loopback must be true or false, got "yes please"`},
		{name: "unknown flag", args: []string{"--port", "1"}, err: "flag provided but not defined: -port"},
		{name: "registry", args: []string{"--registry", "http://127.0.0.1:5000", "--registry-models", "a, b"},
			env: map[string]string{"SKL2GO_REGISTRY_ALIAS": "prod", "SKL2GO_REGISTRY_POLL": "1s"},
			want: defaults(func(c *config) {
				c.registry, c.registryModels, c.registryAlias, c.registryPoll = "http://127.0.0.1:5000", []string{"a", "b"}, "prod", time.Second
			})},
		{name: "bad registry settings", args: []string{"--registry-models", "ok,../x", "--registry-alias", "", "--registry-poll", "1ms"},
			err: `--registry-poll must be a duration of at least 100ms such as 20s, got "1ms"` + "\n" +
				`--registry-models: "../x" is not a valid model name` + "\n" + "--registry-alias must not be empty"},
		{name: "inference log", args: []string{"--inference-log", "/log/replica-1", "--inference-log-rate", "0.25",
			"--inference-log-max-bytes", "1048576", "--inference-log-max-age", "10m", "--inference-log-max-files", "3"},
			env: map[string]string{"SKL2GO_INFERENCE_LOG_QUEUE": "100", "SKL2GO_ACTUALS_TOKEN_FILE": "/secrets/actuals"},
			want: defaults(func(c *config) {
				c.inferenceLog = inferencelog.Options{Dir: "/log/replica-1", MaxBytes: 1 << 20, MaxAge: 10 * time.Minute, MaxFiles: 3, Queue: 100}
				c.inferenceLogRate, c.actualsTokenFile = 0.25, "/secrets/actuals"
			})},
		{name: "inference log rate out of range", args: []string{"--inference-log", "d", "--inference-log-rate", "1.5"},
			err: `--inference-log-rate must be a number from 0 to 1 (the share of inferences logged), got "1.5"`},
		{name: "inference log rate not a number", args: []string{"--inference-log", "d", "--inference-log-rate", "half"},
			err: `--inference-log-rate must be a number from 0 to 1 (the share of inferences logged), got "half"`},
		{name: "inference log without a dir", args: []string{"--inference-log-rate", "1", "--actuals-token-file", "t"},
			err: "--inference-log-rate needs --inference-log DIR, the directory to write to\n--actuals-token-file needs --inference-log DIR"},
		{name: "inference log bounds", args: []string{"--inference-log-max-files", "0", "--inference-log-queue", "0"},
			err: `--inference-log-max-files must be an integer of at least 1, got "0"` + "\n" + `--inference-log-queue must be an integer of at least 1, got "0"`},
		{name: "check reads a repository", args: []string{"--registry", "http://127.0.0.1:5000", "--check"},
			err: "with --registry the versions come from the registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, env(tt.env))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNewLoggerRefusesUnknownSettings(t *testing.T) {
	if _, err := newLogger(config{logLevel: "loud", logFormat: "json"}); err == nil {
		t.Error("accepted log level loud")
	}
	if _, err := newLogger(config{logLevel: "info", logFormat: "xml"}); err == nil || !strings.Contains(err.Error(), "json or text") {
		t.Errorf("log format xml: err = %v", err)
	}
}

func TestOpenInferenceLogReadsTheTokenAndNamesTheDirectory(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		name, token, dir string
		wantDir, err     string
	}{
		{name: "token on one line", token: "s3cret\n", dir: "replica-1", wantDir: "replica-1"},
		{name: "the host's name", token: "s3cret", dir: "logs/{hostname}", wantDir: "logs/" + host},
		{name: "empty token file", token: "\n", dir: "r", err: "must hold one token, on one line"},
		{name: "two tokens", token: "a b\n", dir: "r", err: "must hold one token, on one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tokenFile := filepath.Join(root, "token")
			os.WriteFile(tokenFile, []byte(tt.token), 0o600)
			c := defaults(func(c *config) {
				c.inferenceLog.Dir, c.actualsTokenFile, c.inferenceLogRate = filepath.Join(root, tt.dir), tokenFile, 0.5
			})
			sink, err := openInferenceLog(&c, slog.New(slog.DiscardHandler))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) ||
					(strings.TrimSpace(tt.token) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.token))) {
					t.Fatalf("err = %v, want %q without the token", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close(context.Background())
			if c.http.ActualsToken != "s3cret" || c.http.InferenceLogRate != 0.5 || c.http.InferenceLog == nil {
				t.Errorf("http config %+v", c.http)
			}
			if sink.Source() != "skl2go/"+filepath.Base(tt.wantDir) {
				t.Errorf("source %q, want skl2go/%s", sink.Source(), filepath.Base(tt.wantDir))
			}
			if _, err := os.Stat(filepath.Join(root, tt.wantDir)); err != nil {
				t.Errorf("directory not made: %v", err)
			}
		})
	}
}
