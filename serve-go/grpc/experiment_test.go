package grpc_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	ggrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"skl2go"
	skgrpc "skl2go/grpc"
	"skl2go/grpc/inferencepb"
	skhttp "skl2go/http"
	"skl2go/internal/fixture"
	"skl2go/repository"
)

// serveExperiment serves the fixture models over gRPC with the experiment
// doc running on the regressor, logging every answer into log (nil: off).
func serveExperiment(t *testing.T, doc string, log skl2go.InferenceLogger) (*served, *skl2go.Experiment) {
	t.Helper()
	e, err := skl2go.ParseExperiment([]byte(doc), fixture.Model)
	if err != nil {
		t.Fatal(err)
	}
	config := skhttp.Config{}
	if log != nil {
		config.InferenceLog, config.InferenceLogRate = log, 1
	}
	s := serveWith(t, skgrpc.Config{}, config, func(store *repository.Store) skl2go.ModelStore { return fixture.ExperimentStore{Store: store, E: e} })
	return s, e
}

const halves = `{"id":"halves","sticky":"X-User","variants":[{"name":"control","version":1,"weight":50},{"name":"challenger","version":2,"weight":50}]}`

// infer calls ModelInfer with the metadata pairs (key, value, …), returning
// the answer's header metadata too.
func infer(s *served, req *inferencepb.ModelInferRequest, pairs ...string) (*inferencepb.ModelInferResponse, metadata.MD, error) {
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), pairs...)
	resp, err := s.client.ModelInfer(ctx, req, ggrpc.Header(&header))
	return resp, header, err
}

// TestModelInferExperiment: an unpinned call is answered by the variant of
// its key, the sticky metadata's value (named as the HTTP header, sent
// lowercase) or else the request id, and says so in parameters.variant and
// in the header metadata, as REST's V2 answer does; a pinned version
// bypasses the experiment.
func TestModelInferExperiment(t *testing.T) {
	s, e := serveExperiment(t, halves, nil)
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	seen := map[string]bool{}
	for i := range 40 {
		key := fmt.Sprintf("user-%d", i)
		want := e.Assign(key)
		seen[want.Name] = true
		for _, tt := range []struct {
			name  string
			id    string
			pairs []string
		}{
			{"sticky", fmt.Sprintf("req-%d", i), []string{"x-user", key}},
			{"request id", key, nil},
			{"x-request-id", "", []string{"x-request-id", key}},
		} {
			req := request(meta, cols, false)
			req.Id = tt.id
			resp, header, err := infer(s, req, tt.pairs...)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.name, key, err)
			}
			if got := resp.GetParameters()["variant"].GetStringParam(); got != want.Name {
				t.Errorf("%s %s: parameters.variant %q, want %q", tt.name, key, got, want.Name)
			}
			if resp.ModelVersion != strconv.Itoa(want.Version) {
				t.Errorf("%s %s: model_version %q, want %d", tt.name, key, resp.ModelVersion, want.Version)
			}
			for k, v := range map[string]string{"x-skl2go-variant": want.Name, "x-skl2go-experiment": "halves",
				"x-skl2go-model": fixture.Model, "x-skl2go-version": strconv.Itoa(want.Version)} {
				if got := header.Get(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s %s: header %s = %q, want %q", tt.name, key, k, got, v)
				}
			}
		}
	}
	if !seen["control"] || !seen["challenger"] {
		t.Errorf("variants seen %v, want both", seen)
	}
	req := request(meta, cols, false)
	req.ModelVersion = "1"
	resp, header, err := infer(s, req, "x-user", "user-1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelVersion != "1" || resp.GetParameters()["variant"] != nil || header.Get("x-skl2go-variant") != nil {
		t.Errorf("pinned: version %q parameters %v header %v, want version 1 and no variant", resp.ModelVersion, resp.GetParameters(), header)
	}
}

// TestModelInferRequestID: the request id is the id field, else the
// x-request-id metadata, else a new one, echoed in the header metadata
// (also with an error); one that REST would refuse is INVALID_ARGUMENT
// naming where it came.
func TestModelInferRequestID(t *testing.T) {
	s := serve(t, skgrpc.Config{})
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	long := strings.Repeat("x", 129)
	for _, tt := range []struct {
		name, id string
		pairs    []string
		want     string // a regexp of the echoed id, or of the error
		code     codes.Code
	}{
		{"id field", "trip-7", []string{"x-request-id", "nginx-1"}, "^trip-7$", codes.OK},
		{"metadata", "", []string{"x-request-id", "nginx-1"}, "^nginx-1$", codes.OK},
		{"made", "", nil, "^[0-9a-f]{32}$", codes.OK},
		{"long id", long, nil, "^id must be 1 to 128 printable ASCII characters, got 129 bytes$", codes.InvalidArgument},
		{"control id", "a\x01b", nil, "^id must be 1 to 128 printable ASCII", codes.InvalidArgument},
		{"long metadata", "", []string{"x-request-id", long}, "^metadata x-request-id must be 1 to 128", codes.InvalidArgument},
	} {
		req := request(meta, cols, false)
		req.Id = tt.id
		_, header, err := infer(s, req, tt.pairs...)
		if code := status.Code(err); code != tt.code {
			t.Fatalf("%s: %v, want %v", tt.name, err, tt.code)
		}
		got := strings.Join(header.Get("x-request-id"), ",")
		if err != nil {
			got = status.Convert(err).Message()
		}
		if !regexp.MustCompile(tt.want).MatchString(got) {
			t.Errorf("%s: got %q, want %s", tt.name, got, tt.want)
		}
	}
	req := request(meta, cols, false)
	req.ModelName, req.Id = "no_such_model", "lost-1"
	_, header, err := infer(s, req)
	if status.Code(err) != codes.NotFound || strings.Join(header.Get("x-request-id"), ",") != "lost-1" {
		t.Errorf("unknown model: %v, x-request-id %v, want NOT_FOUND and lost-1", err, header.Get("x-request-id"))
	}
}

// TestModelInferInferenceLog: a gRPC answer reaches the inference log with
// its request id and variant, the experiment's mirror runs the same rows
// and is logged as a shadow record, and the variant's metrics count it.
func TestModelInferInferenceLog(t *testing.T) {
	doc := `{"id":"logged","variants":[{"name":"control","version":1,"weight":1}],"mirror":{"name":"shadow","version":2}}`
	log := &fixture.MemoryLog{}
	s, _ := serveExperiment(t, doc, log)
	meta := s.meta[fixture.Model]
	cols, _ := examples(meta)
	req := request(meta, cols, true)
	req.Id = "trip-42"
	if _, _, err := infer(s, req); err != nil {
		t.Fatal(err)
	}
	byType := log.ByType(t, skl2go.InferenceEventType, skl2go.ShadowEventType)
	answer, mirror := byType[skl2go.InferenceEventType], byType[skl2go.ShadowEventType]
	rows := len(meta.Examples)
	for _, tt := range []struct {
		rec     *skl2go.InferenceRecord
		variant string
		version int
	}{{answer, "control", 1}, {mirror, "shadow", 2}} {
		if tt.rec.RequestID != "trip-42" || tt.rec.Variant != tt.variant || tt.rec.Version != tt.version || tt.rec.Model != fixture.Model {
			t.Errorf("%s: %s request %q variant %q version %d, want %s trip-42 %s %d", tt.rec.Type, tt.rec.Model,
				tt.rec.RequestID, tt.rec.Variant, tt.rec.Version, fixture.Model, tt.variant, tt.version)
		}
		if got := len(tt.rec.Outputs[0].Float64s()); got != rows || len(tt.rec.Inputs) != len(meta.Inputs) {
			t.Errorf("%s: %d predictions of %d inputs, want %d of %d", tt.rec.Type, got, len(tt.rec.Inputs), rows, len(meta.Inputs))
		}
	}
	found := counters(t, s, func(labels map[string]string) (string, bool) {
		return labels["variant"] + labels["outcome"], labels["model"] == fixture.Model
	})
	for series, want := range map[string]float64{
		"skl2go_experiment_requests_total/control": 1,
		"skl2go_experiment_rows_total/control":     float64(rows),
		"skl2go_shadow_runs_total/shadowok":        1,
	} {
		if found[series] != want {
			t.Errorf("%s = %v, want %v (found %v)", series, found[series], want, found)
		}
	}
}
