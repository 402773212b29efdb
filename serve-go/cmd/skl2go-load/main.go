// Command skl2go-load is a bounded, checking load generator for the
// prediction API, over REST (v1 predict, what wrk and Locust send) or gRPC
// (the Open Inference Protocol's ModelInfer, ghz's job, which is not
// packaged here). It sends v1 predict bodies ({"instances": [...]}, one per
// line, as the bench writes them for wrk), round robin, either at a fixed
// rate (-rate: open loop, each request due at its own time whether or not
// the earlier ones were answered) or back to back from -workers workers,
// until -duration or -requests runs out or it gets SIGINT or SIGTERM.
//
// Every answer is checked: status 200 (gRPC: OK), the model's name, one
// finite prediction per instance, and a version among -versions when given.
// At the end it prints one JSON line, {"load": {...}}: requests, good
// answers by version, errors by kind (with the first message of each), the
// requests resent or retried, how many paced requests went out late,
// latency percentiles in microseconds (requests, duration_us, errors and
// latency_us as in loadtest/wrk.lua's line), and the 503 answers on their
// own: how many lacked Retry-After, and their latency, which tells a fast
// refusal from a request that waited out its deadline.
//
//	skl2go-load -addr 127.0.0.1:8080 -model trip_duration -bodies bodies-1.jsonl -rate 2000 -duration 60s
//	skl2go-load -protocol grpc -addr 127.0.0.1:8081 -model trip_duration -bodies bodies-1.jsonl -duration 15s
//
// Exit status 0 when the run was made (its errors are in the line), 1 when
// it could not start, 2 on bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "skl2go-load:", err)
		var fe *flagError
		if errors.As(err, &fe) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// maxDuration bounds a run: a soak's half hour, with room.
const maxDuration = 4 * time.Hour

type config struct {
	protocol, addr, model, bodies, versions string
	raw                                     bool
	conns, retries                          int
	timeout, idle                           time.Duration
	pace                                    pace
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("skl2go-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.protocol, "protocol", "rest", "rest (POST /v1/models/{model}:predict) or grpc (ModelInfer)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "`host:port` (or http://host:port for rest): nginx's or a replica's")
	fs.StringVar(&c.model, "model", "trip_duration", "model `name`")
	fs.StringVar(&c.bodies, "bodies", "", "`file` of v1 predict bodies, one per line (required)")
	fs.StringVar(&c.versions, "versions", "", "versions an answer may have, comma-separated (empty: any; all are counted)")
	fs.BoolVar(&c.raw, "raw", true, "grpc: send raw_input_contents (as tritonclient does); false: typed contents")
	fs.IntVar(&c.conns, "conns", 4, "grpc: connections (rest: up to one per worker, kept alive)")
	fs.IntVar(&c.pace.workers, "workers", 64, "requests in flight at most")
	fs.Float64Var(&c.pace.rate, "rate", 0, "requests per second, paced (0: each worker back to back)")
	fs.DurationVar(&c.pace.duration, "duration", 10*time.Second, "how long to send (at most 4h)")
	fs.Int64Var(&c.pace.requests, "requests", 1_000_000_000, "stop after this many requests")
	fs.IntVar(&c.retries, "retries", 0, "grpc: times a call answered UNAVAILABLE is sent again")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of one request")
	fs.DurationVar(&c.idle, "idle-timeout", 20*time.Second, "rest: close a connection idle this long (below the server's keep-alive timeout)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, &flagError{"arguments", fmt.Sprintf("none expected, got %q", fs.Args())}
	case c.protocol != "rest" && c.protocol != "grpc":
		return c, &flagError{"-protocol", fmt.Sprintf("rest or grpc, got %q", c.protocol)}
	case c.bodies == "":
		return c, &flagError{"-bodies", "required"}
	case c.pace.duration <= 0 || c.pace.duration > maxDuration:
		return c, &flagError{"-duration", fmt.Sprintf("must be in (0, %s], got %s", maxDuration, c.pace.duration)}
	case c.pace.rate < 0:
		return c, &flagError{"-rate", fmt.Sprintf("must not be negative, got %g", c.pace.rate)}
	case c.pace.workers < 1 || c.conns < 1 || c.pace.requests < 1:
		return c, &flagError{"-workers, -conns, -requests", "must be positive"}
	case c.retries < 0:
		return c, &flagError{"-retries", "must not be negative"}
	case c.timeout <= 0 || c.idle <= 0:
		return c, &flagError{"-timeout, -idle-timeout", "must be positive"}
	}
	if _, err := parseVersions(c.versions); err != nil {
		return c, err
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	versions, _ := parseVersions(c.versions)
	data, err := os.ReadFile(c.bodies)
	if err != nil {
		return err
	}
	bodies, err := readBodies(data, c.bodies)
	if err != nil {
		return err
	}
	var send sender
	target := c.addr
	switch c.protocol {
	case "rest":
		if !strings.Contains(target, "://") {
			target = "http://" + target
		}
		r, err := newRESTTarget(target, c.model, bodies, versions, c.pace.workers, c.timeout, c.idle)
		if err != nil {
			return err
		}
		send = r.send
	case "grpc":
		g, err := newGRPCTarget(c.addr, c.model, bodies, versions, c.conns, c.retries, c.raw, c.timeout)
		if err != nil {
			return err
		}
		defer g.close()
		send = g.send
	}
	t := newTally()
	elapsed := drive(ctx, c.pace, send, t)
	out, err := json.Marshal(map[string]Result{"load": t.result(c.protocol, target, c.pace.rate, elapsed)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, string(out))
	return err
}
