// Command skl2go-grpcload is a small, bounded gRPC load generator for the
// Open Inference Protocol (ghz's job, which is not packaged here): it sends
// ModelInfer calls made from v1 predict bodies ({"instances": [...]}, one
// per line, as the bench writes them for wrk) from a number of workers over
// a few connections, for a fixed time or number of calls, and prints one
// JSON line in wrk.lua's shape: {"grpcload": {"requests", "duration_us",
// "errors", "latency_us": {"p50", "p95", "p99", "max", "mean"}}}.
//
//	skl2go-grpcload -addr 127.0.0.1:8081 -model trip_duration -bodies bodies-1.jsonl -duration 15s
//
// With -retries N a call answered UNAVAILABLE is sent again, up to N
// times, as a gRPC client's retry policy would (the chaos run uses it).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ggrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"skl2go/grpc/inferencepb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skl2go-grpcload:", err)
		os.Exit(1)
	}
}

type config struct {
	addr, model, bodies string
	raw                 bool
	conns, workers      int
	duration            time.Duration
	maxRequests         int64
	retries             int
	timeout             time.Duration
}

func run(args []string) error {
	var c config
	fs := flag.NewFlagSet("skl2go-grpcload", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8081", "gRPC `address` (nginx's gRPC port or a replica's)")
	fs.StringVar(&c.model, "model", "trip_duration", "model `name`")
	fs.StringVar(&c.bodies, "bodies", "", "`file` of v1 predict bodies, one per line (required)")
	fs.BoolVar(&c.raw, "raw", true, "send raw_input_contents (as tritonclient does); false: typed contents")
	fs.IntVar(&c.conns, "conns", 4, "gRPC connections")
	fs.IntVar(&c.workers, "workers", 32, "calls in flight at once")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send (at most 10m)")
	fs.Int64Var(&c.maxRequests, "max-requests", 10_000_000, "stop after this many calls")
	fs.IntVar(&c.retries, "retries", 0, "times a call answered UNAVAILABLE is sent again")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of one call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case c.bodies == "":
		return errors.New("-bodies is required")
	case c.duration <= 0 || c.duration > 10*time.Minute:
		return fmt.Errorf("-duration must be in (0, 10m], got %s", c.duration)
	case c.conns < 1 || c.workers < 1 || c.maxRequests < 1 || c.retries < 0:
		return errors.New("-conns, -workers and -max-requests must be positive, -retries not negative")
	}
	clients := make([]inferencepb.GRPCInferenceServiceClient, c.conns)
	for i := range clients {
		conn, err := ggrpc.NewClient(c.addr, ggrpc.WithTransportCredentials(insecure.NewCredentials()),
			ggrpc.WithDefaultCallOptions(ggrpc.MaxCallRecvMsgSize(64<<20), ggrpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = inferencepb.NewGRPCInferenceServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	meta, err := clients[0].ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: c.model})
	cancel()
	if err != nil {
		return fmt.Errorf("model metadata: %w", err)
	}
	requests, err := readRequests(c.bodies, meta, c.raw)
	if err != nil {
		return err
	}
	result := load(c, clients, requests)
	out, err := json.Marshal(map[string]any{"grpcload": result})
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

// readRequests makes one ModelInferRequest per body, with the model's
// input datatypes.
func readRequests(path string, meta *inferencepb.ModelMetadataResponse, raw bool) ([]*inferencepb.ModelInferRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*inferencepb.ModelInferRequest
	for n, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var body struct {
			Instances []map[string]any `json:"instances"`
		}
		if err := json.Unmarshal([]byte(line), &body); err != nil || len(body.Instances) == 0 {
			return nil, fmt.Errorf("%s:%d: expected {\"instances\": [...]}", path, n+1)
		}
		req, err := inferRequest(meta, body.Instances, raw)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
		}
		out = append(out, req)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no bodies", path)
	}
	return out, nil
}

func inferRequest(meta *inferencepb.ModelMetadataResponse, rows []map[string]any, raw bool) (*inferencepb.ModelInferRequest, error) {
	req := &inferencepb.ModelInferRequest{ModelName: meta.Name}
	le := binary.LittleEndian
	for _, spec := range meta.Inputs {
		t := &inferencepb.ModelInferRequest_InferInputTensor{Name: spec.Name, Datatype: spec.Datatype, Shape: []int64{int64(len(rows)), 1}}
		c := &inferencepb.InferTensorContents{}
		var buf []byte
		for i, row := range rows {
			v, ok := row[spec.Name]
			if !ok {
				return nil, fmt.Errorf("instance %d has no %s", i, spec.Name)
			}
			switch spec.Datatype {
			case "FP32", "FP64", "INT64", "INT32":
				f, ok := v.(float64)
				if !ok {
					return nil, fmt.Errorf("instance %d: %s is not a number", i, spec.Name)
				}
				switch spec.Datatype {
				case "FP32":
					c.Fp32Contents = append(c.Fp32Contents, float32(f))
					buf = le.AppendUint32(buf, math.Float32bits(float32(f)))
				case "FP64":
					c.Fp64Contents = append(c.Fp64Contents, f)
					buf = le.AppendUint64(buf, math.Float64bits(f))
				case "INT64":
					c.Int64Contents = append(c.Int64Contents, int64(f))
					buf = le.AppendUint64(buf, uint64(int64(f)))
				case "INT32":
					c.IntContents = append(c.IntContents, int32(f))
					buf = le.AppendUint32(buf, uint32(int32(f)))
				}
			case "BYTES":
				s := fmt.Sprint(v)
				c.BytesContents = append(c.BytesContents, []byte(s))
				buf = le.AppendUint32(buf, uint32(len(s)))
				buf = append(buf, s...)
			case "BOOL":
				b, _ := v.(bool)
				c.BoolContents = append(c.BoolContents, b)
				if b {
					buf = append(buf, 1)
				} else {
					buf = append(buf, 0)
				}
			default:
				return nil, fmt.Errorf("input %s: datatype %s not supported here", spec.Name, spec.Datatype)
			}
		}
		if raw {
			req.RawInputContents = append(req.RawInputContents, buf)
		} else {
			t.Contents = c
		}
		req.Inputs = append(req.Inputs, t)
	}
	return req, nil
}

// Result is what one run saw, in wrk.lua's shape.
type Result struct {
	Requests   int64            `json:"requests"`
	DurationUS int64            `json:"duration_us"`
	Retries    int64            `json:"retries"`
	Errors     map[string]int64 `json:"errors"`
	LatencyUS  map[string]any   `json:"latency_us"`
}

// load sends calls until the duration or the call count runs out.
func load(c config, clients []inferencepb.GRPCInferenceServiceClient, requests []*inferencepb.ModelInferRequest) Result {
	var (
		sent, retries atomic.Int64
		mu            sync.Mutex
		latencies     []int64
		errs          = map[string]int64{}
		wg            sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(c.duration)
	for w := 0; w < c.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := clients[w%len(clients)]
			var mine []int64
			for i := w; time.Now().Before(deadline) && sent.Add(1) <= c.maxRequests; i += c.workers {
				req := requests[i%len(requests)]
				began := time.Now()
				var err error
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
					_, err = client.ModelInfer(ctx, req)
					cancel()
					if status.Code(err) != codes.Unavailable || attempt == c.retries {
						break
					}
					retries.Add(1)
					time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
				}
				if err != nil {
					mu.Lock()
					errs[strings.ToLower(status.Code(err).String())]++
					if len(errs) == 1 && errs[strings.ToLower(status.Code(err).String())] == 1 {
						fmt.Fprintln(os.Stderr, "first error:", err)
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(began).Microseconds())
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	pct := func(p float64) int64 {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	var sum int64
	for _, l := range latencies {
		sum += l
	}
	mean := 0.0
	if len(latencies) > 0 {
		mean = float64(sum) / float64(len(latencies))
	}
	var failed int64
	for _, n := range errs {
		failed += n
	}
	return Result{Requests: int64(len(latencies)) + failed, DurationUS: elapsed.Microseconds(), Retries: retries.Load(), Errors: errs,
		LatencyUS: map[string]any{"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1), "mean": mean}}
}
