package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	skhttp "skl2go/http"
	"skl2go/repository"
)

// counted answers zeros and counts its runs.
type counted struct {
	meta *skl2go.Metadata
	runs atomic.Int64
}

func (c *counted) Metadata() *skl2go.Metadata { return c.meta }
func (c *counted) Close() error               { return nil }
func (c *counted) Predict(_ context.Context, batch *skl2go.Batch) ([]skl2go.Output, error) {
	c.runs.Add(1)
	return []skl2go.Output{{Name: "variable", Type: skl2go.Float32, Shape: []int64{int64(batch.Rows), 1},
		Values: skl2go.Values{Float32: make([]float32, batch.Rows)}}}, nil
}

// A request nginx sent on longer ago than the deadline (X-Request-Start)
// is refused before its body is read or the model runs; any other header
// value, or none, leaves the request alone.
func TestARequestReachingTheReplicaPastTheDeadlineIsRefusedAtOnce(t *testing.T) {
	model := &counted{meta: fixtureMetadata(t)}
	var late []string
	s := skhttp.NewServer(repository.NewStore(model), skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 10,
		Deadline: 100 * time.Millisecond, Late: func(m *skl2go.Metadata) { late = append(late, fmt.Sprint(m.Name, m.Version)) }},
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	s.SetReady(true)
	body, _ := examples(model.meta)
	msec := func(d time.Duration) string {
		at := time.Now().Add(-d)
		return fmt.Sprintf("t=%d.%03d", at.Unix(), at.Nanosecond()/1e6)
	}
	for _, tc := range []struct {
		name, header string
		refused      bool
	}{
		{"none", "", false},
		{"just sent", msec(0), false},
		{"within the deadline", msec(50 * time.Millisecond), false},
		{"past the deadline", msec(2 * time.Second), true},
		{"past, whole seconds", fmt.Sprintf("t=%d", time.Now().Add(-3*time.Second).Unix()), true},
		{"past, microseconds", fmt.Sprintf("t=%d.%06d", time.Now().Add(-time.Second).Unix(), 5), true},
		{"in the future (clocks apart)", msec(-time.Hour), false},
		{"not nginx's form", fmt.Sprint(time.Now().Add(-time.Hour).UnixMilli()), false},
		{"signed", "t=-5", false},
		{"no digits", "t=.5", false},
		{"garbage", "t=yesterday", false},
		{"too many fraction digits", "t=1.0000000001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, lateBefore := model.runs.Load(), len(late)
			req := httptest.NewRequest("POST", "/v1/models/trip_duration:predict", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if tc.header != "" {
				req.Header.Set("X-Request-Start", tc.header)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			ran := model.runs.Load() > before
			if !tc.refused {
				if rec.Code != 200 || !ran || len(late) != lateBefore {
					t.Fatalf("X-Request-Start %q: status %d, model ran %v, counted late %d: want an answer", tc.header, rec.Code, ran, len(late)-lateBefore)
				}
				return
			}
			var answer struct{ Error string }
			_ = json.Unmarshal(rec.Body.Bytes(), &answer)
			if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || ran ||
				!strings.Contains(answer.Error, "after nginx passed it on, over the 100ms deadline") {
				t.Fatalf("X-Request-Start %q: status %d, Retry-After %q, model ran %v, error %q: want a 503 at once",
					tc.header, rec.Code, rec.Header().Get("Retry-After"), ran, answer.Error)
			}
			if len(late) != lateBefore+1 || late[len(late)-1] != "trip_duration1" {
				t.Fatalf("Late told %v, want once more with trip_duration 1", late)
			}
		})
	}
}
