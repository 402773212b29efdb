package main

import (
	"strings"
	"testing"
	"time"
)

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
		{name: "defaults", want: config{models: "models", addr: "127.0.0.1:9001", ortThreads: 1, maxBodyBytes: 32 << 20,
			maxRows: 100000, shutdownTimeout: 20 * time.Second, pollInterval: 5 * time.Second, versionsKept: 1, logLevel: "info", logFormat: "json"}},
		{name: "environment", env: map[string]string{"SKL2GO_ADDR": "127.0.0.1:9002", "SKL2GO_ORT_THREADS": "2", "SKL2GO_MODELS": "/m"},
			want: config{models: "/m", addr: "127.0.0.1:9002", ortThreads: 2, maxBodyBytes: 32 << 20,
				maxRows: 100000, shutdownTimeout: 20 * time.Second, pollInterval: 5 * time.Second, versionsKept: 1, logLevel: "info", logFormat: "json"}},
		{name: "flags win over environment", args: []string{"--addr", "127.0.0.1:9003", "--max-rows", "5"},
			env: map[string]string{"SKL2GO_ADDR": "127.0.0.1:9002"},
			want: config{models: "models", addr: "127.0.0.1:9003", ortThreads: 1, maxBodyBytes: 32 << 20,
				maxRows: 5, shutdownTimeout: 20 * time.Second, pollInterval: 5 * time.Second, versionsKept: 1, logLevel: "info", logFormat: "json"}},
		{name: "bad numbers", args: []string{"--ort-threads", "0", "--max-rows", "many"}, err: "--ort-threads must be an integer of at least 1"},
		{name: "bad duration", args: []string{"--shutdown-timeout", "soon"}, err: `--shutdown-timeout must be a duration such as 20s, got "soon"`},
		{name: "roll-out settings", args: []string{"--poll-interval", "0", "--versions-kept", "3"},
			want: config{models: "models", addr: "127.0.0.1:9001", ortThreads: 1, maxBodyBytes: 32 << 20, maxRows: 100000,
				shutdownTimeout: 20 * time.Second, pollInterval: 0, versionsKept: 3, logLevel: "info", logFormat: "json"}},
		{name: "bad roll-out settings", args: []string{"--poll-interval", "-1s", "--versions-kept", "0"},
			err: `--versions-kept must be an integer of at least 1, got "0"` + "\n" + `--poll-interval must be a duration such as 20s, got "-1s"`},
		{name: "unknown flag", args: []string{"--port", "1"}, err: "flag provided but not defined: -port"},
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
			if got != tt.want {
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
