package main

import (
	"math"
	"math/bits"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// histogram counts latencies in microseconds in log-linear buckets: exact
// below 2^subBits µs, then 2^subBits buckets per power of two (an error of
// at most 1/2^subBits of the value). Its size is fixed however long the run,
// so a soak's generator does not grow with the requests it sends.
type histogram struct {
	counts     []int64
	n, sum     int64
	minV, maxV int64
}

const subBits = 6 // 64 buckets per power of two: within 1.6%

func newHistogram() *histogram {
	return &histogram{counts: make([]int64, (64-subBits+1)<<subBits), minV: math.MaxInt64}
}

// bucket is the index of the bucket holding v (v >= 0).
func bucket(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	exp := bits.Len64(uint64(v)) - subBits // >= 1
	return exp<<subBits | int(v>>(exp-1))&(1<<subBits-1)
}

// lowest is the smallest value bucket b holds.
func lowest(b int) int64 {
	exp, sub := b>>subBits, int64(b&(1<<subBits-1))
	if exp == 0 {
		return sub
	}
	return (1<<subBits | sub) << (exp - 1)
}

func (h *histogram) record(us int64) {
	us = max(us, 0)
	h.counts[bucket(us)]++
	h.n++
	h.sum += us
	h.minV, h.maxV = min(h.minV, us), max(h.maxV, us)
}

// percentile is the lowest value of the bucket holding the p-th fraction
// of the values (the exact maximum for p = 1), 0 when empty.
func (h *histogram) percentile(p float64) int64 {
	if h.n == 0 {
		return 0
	}
	if p >= 1 {
		return h.maxV
	}
	rank := max(1, int64(math.Ceil(p*float64(h.n))))
	var seen int64
	for b, c := range h.counts {
		if seen += c; seen >= rank {
			return max(h.minV, min(lowest(b), h.maxV))
		}
	}
	return h.maxV
}

func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return float64(h.sum) / float64(h.n)
}

// outcome is what one request came to: kind "" is a good answer (of
// version), any other kind an error, detail saying what it was.
type outcome struct {
	version string
	kind    string
	detail  string
	resent  bool // sent a second time on a new connection (see rest.go)
	retries int  // gRPC calls sent again after UNAVAILABLE
	// status and retryAfter: rest, an answer other than 200 (its status,
	// and whether it said when to retry).
	status     int
	retryAfter bool
}

// tally adds up the outcomes of a run; its methods are safe for concurrent use.
type tally struct {
	mu       sync.Mutex
	latency  *histogram
	service  *histogram // of the good answers, from when each was sent (not due)
	shed     *histogram // of the 503 answers, from when each was sent: a server shedding load answers them fast
	shedNoRA int64      // 503 answers without Retry-After
	versions map[string]int64
	errors   map[string]int64
	first    map[string]string // the first detail of each error kind
	resent   int64
	retries  int64
	late     int64 // paced requests sent lateAfter or more after they were due
	behind   time.Duration
}

func newTally() *tally {
	return &tally{latency: newHistogram(), service: newHistogram(), shed: newHistogram(), versions: map[string]int64{}, errors: map[string]int64{}, first: map[string]string{}}
}

// add records one request; took is from when it was due to its answer, lag
// how long after it was due it was sent.
func (t *tally) add(o outcome, took, lag time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o.resent {
		t.resent++
	}
	t.retries += int64(o.retries)
	if lag >= lateAfter {
		t.late++
	}
	t.behind = max(t.behind, lag)
	if o.status == http.StatusServiceUnavailable {
		t.shed.record((took - lag).Microseconds())
		if !o.retryAfter {
			t.shedNoRA++
		}
	}
	if o.kind != "" {
		if t.errors[o.kind]++; t.errors[o.kind] == 1 {
			t.first[o.kind] = o.detail
		}
		return
	}
	t.versions[o.version]++
	t.latency.record(took.Microseconds())
	t.service.record((took - lag).Microseconds())
}

// lateAfter: a paced request sent this long after it was due counts as
// late (every worker was busy: the offered rate was not held).
const lateAfter = 10 * time.Millisecond

// Result is one run's line of output. requests, duration_us, errors and
// latency_us have wrk.lua's meaning, so the bench reads either; latency is
// of the good answers, from when each request was due (a paced run's
// queueing behind busy workers counts, as in wrk2).
type Result struct {
	Protocol    string            `json:"protocol"`
	Target      string            `json:"target"`
	Rate        float64           `json:"rate"` // requests/s offered, 0: as fast as answers come
	Requests    int64             `json:"requests"`
	OK          int64             `json:"ok"`
	DurationUS  int64             `json:"duration_us"`
	AchievedRPS float64           `json:"achieved_rps"`
	Errors      map[string]int64  `json:"errors"`
	FirstErrors map[string]string `json:"first_errors"`
	Versions    map[string]int64  `json:"versions"`
	Resent      int64             `json:"resent"`
	Retries     int64             `json:"retries"`
	Late        int64             `json:"late"`
	BehindUSMax int64             `json:"behind_us_max"`
	LatencyUS   map[string]any    `json:"latency_us"`
	// ServiceUS: the good answers' latency from when each was sent, the
	// server's side of latency_us (which a paced run that fell behind
	// inflates with its own backlog).
	ServiceUS map[string]any `json:"service_us"`
	// Unavailable: rest, the 503 answers (also counted in Errors): how
	// many, how many had no Retry-After, and their latency from when each
	// was sent, which tells a fast refusal from a request that waited for
	// its deadline.
	Unavailable Unavailable `json:"unavailable"`
}

// Unavailable sums up the 503 answers of a run.
type Unavailable struct {
	Count        int64          `json:"count"`
	NoRetryAfter int64          `json:"no_retry_after"`
	LatencyUS    map[string]any `json:"latency_us"`
}

func percentiles(h *histogram) map[string]any {
	return map[string]any{"p50": h.percentile(0.50), "p95": h.percentile(0.95),
		"p99": h.percentile(0.99), "max": h.percentile(1), "mean": h.mean()}
}

func (t *tally) result(protocol, target string, rate float64, elapsed time.Duration) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	var failed int64
	for _, n := range t.errors {
		failed += n
	}
	r := Result{Protocol: protocol, Target: target, Rate: rate, Requests: t.latency.n + failed, OK: t.latency.n,
		DurationUS: elapsed.Microseconds(), Errors: t.errors, FirstErrors: t.first, Versions: t.versions,
		Resent: t.resent, Retries: t.retries, Late: t.late, BehindUSMax: t.behind.Microseconds(),
		LatencyUS: percentiles(t.latency), ServiceUS: percentiles(t.service),
		Unavailable: Unavailable{Count: t.shed.n, NoRetryAfter: t.shedNoRA, LatencyUS: percentiles(t.shed)}}
	if elapsed > 0 {
		r.AchievedRPS = float64(r.Requests) / elapsed.Seconds()
	}
	return r
}

// parseVersions reads -versions ("1,2"): the set of versions an answer may
// have; empty allows any.
func parseVersions(s string) (map[string]bool, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(part); err != nil || n < 1 {
			return nil, &flagError{"-versions", "a comma-separated list of versions (positive integers), got " + strconv.Quote(s)}
		}
		out[part] = true
	}
	return out, nil
}

type flagError struct{ flag, problem string }

func (e *flagError) Error() string { return e.flag + ": " + e.problem }

// allowed reports whether an answer's version is in the set (nil: any).
func allowed(set map[string]bool, version string) bool {
	if set == nil {
		return true
	}
	return set[version]
}

// sortedKeys is for stable messages.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
