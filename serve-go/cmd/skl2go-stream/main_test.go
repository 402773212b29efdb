package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(config) bool
	}{
		{name: "defaults", check: func(c config) bool {
			return c.kafka.Brokers[0] == "127.0.0.1:9092" && c.names[0] == "trip_duration" && c.kafka.Input == "rides" &&
				c.kafka.Output == "predictions" && c.kafka.Group == "skl2go-{model}" && c.kafka.MaxPollRecords == 1000
		}},
		{name: "several models and brokers", args: []string{"--model", "trip_duration, tip_given", "--brokers", "a:1,b:2"},
			check: func(c config) bool {
				return len(c.names) == 2 && c.names[1] == "tip_given" && len(c.kafka.Brokers) == 2
			}},
		{name: "environment", env: map[string]string{"SKL2GO_KAFKA": "k:9", "SKL2GO_STREAM_INPUT": "in"},
			check: func(c config) bool { return c.kafka.Brokers[0] == "k:9" && c.kafka.Input == "in" }},
		{name: "bad model name", args: []string{"--model", "../x"}, wantErr: `--model: "../x" is not a valid model name`},
		{name: "metrics beyond loopback", args: []string{"--metrics-addr", "0.0.0.0:9180"}, wantErr: "--metrics-addr must be a loopback"},
		{name: "poll records", args: []string{"--max-poll-records", "0"}, wantErr: "--max-poll-records must be an integer of at least 1"},
		{name: "no input", args: []string{"--input", ""}, wantErr: "--input: a topic name is required"},
		{name: "registry follows the models scored", args: []string{"--registry", "http://127.0.0.1:5000", "--model", "a,b"},
			env: map[string]string{"SKL2GO_REGISTRY_ALIAS": "prod"},
			check: func(c config) bool {
				return c.registry.URL == "http://127.0.0.1:5000" && c.registry.Alias == "prod" &&
					c.registry.Poll == 5*time.Second && strings.Join(c.registry.Models, ",") == "a,b"
			}},
		{name: "bad registry settings", args: []string{"--registry-alias", "", "--registry-poll", "1ms"},
			wantErr: `--registry-poll must be a duration of at least 100ms such as 20s, got "1ms"` + "\n" + "--registry-alias must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("config %+v, err %v", c, err)
			}
		})
	}
}
