package mlflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skl2go"
	"skl2go/internal/fixture"
	"skl2go/mlflow"
	"skl2go/onnx"
	"skl2go/repository"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

// registry is a fake MLflow tracking server: the REST calls the poller
// makes, and the artifact proxy serving each version's files from a
// directory (model.onnx, model.json). Faults: down (503), slow (a delay
// before every answer), unauthorised unless the right header comes.
type registry struct {
	t        *testing.T
	server   *httptest.Server
	mu       sync.Mutex
	aliases  map[string]int            // model -> version of @champion
	named    map[string]map[string]int // model -> other aliases -> version
	tags     map[string]map[string]string
	versions map[string]map[int]string // model -> version -> directory of its files
	scheme   string                    // of the download URI, mlflow-artifacts by default
	down     bool
	delay    time.Duration
	auth     string // the Authorization header required, if any
	calls    atomic.Int64
	fetches  atomic.Int64 // downloads of model.onnx
}

func newRegistry(t *testing.T) *registry {
	r := &registry{t: t, aliases: map[string]int{}, versions: map[string]map[int]string{}, scheme: "mlflow-artifacts",
		named: map[string]map[string]int{}, tags: map[string]map[string]string{}}
	r.server = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.server.Close)
	return r
}

// register adds version v of name with the files of the fixture model
// `from`, its model.json edited by edit (nil: unchanged), and returns the
// directory of its files.
func (r *registry) register(name string, v int, from string, edit func(map[string]any)) string {
	dir := fixture.CopyModel(r.t, models, r.t.TempDir(), from, 1)
	if edit != nil {
		fixture.EditMetadata(r.t, dir, edit)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.versions[name] == nil {
		r.versions[name] = map[int]string{}
	}
	r.versions[name][v] = dir
	return dir
}

func (r *registry) setAlias(name string, v int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aliases[name] = v
}

// champions registers the regressor and the classifier fixtures at these
// versions, each with the alias on it.
func (r *registry) champions(model, classifier int) {
	r.register(fixture.Model, model, fixture.Model, nil)
	r.register(fixture.Classifier, classifier, fixture.Classifier, nil)
	r.setAlias(fixture.Model, model)
	r.setAlias(fixture.Classifier, classifier)
}

func (r *registry) set(f func(r *registry)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *registry) fail(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error_code": code, "message": msg})
}

func (r *registry) handle(w http.ResponseWriter, req *http.Request) {
	r.calls.Add(1)
	r.mu.Lock()
	down, delay, auth := r.down, r.delay, r.auth
	r.mu.Unlock()
	time.Sleep(delay)
	if down {
		r.fail(w, http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE", "down for the test")
		return
	}
	if auth != "" && req.Header.Get("Authorization") != auth {
		r.fail(w, http.StatusUnauthorized, "UNAUTHENTICATED", "credentials required")
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q := req.URL.Query()
	name := q.Get("name")
	switch p := req.URL.Path; {
	case p == "/api/2.0/mlflow/registered-models/search":
		var list []map[string]string
		for n := range r.versions {
			list = append(list, map[string]string{"name": n})
		}
		json.NewEncoder(w).Encode(map[string]any{"registered_models": list})
	case p == "/api/2.0/mlflow/registered-models/alias":
		v, ok := r.aliases[name]
		if _, exists := r.versions[name]; !exists {
			r.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "Registered Model with name="+name+" not found")
			return
		}
		if !ok {
			r.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "Registered model alias champion not found.")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"model_version": map[string]any{
			"name": name, "version": strconv.Itoa(v), "run_id": "run" + strconv.Itoa(v), "status": "READY"}})
	case p == "/api/2.0/mlflow/registered-models/get":
		if _, exists := r.versions[name]; !exists {
			r.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "Registered Model with name="+name+" not found")
			return
		}
		var tags, aliases []map[string]string
		for k, v := range r.tags[name] {
			tags = append(tags, map[string]string{"key": k, "value": v})
		}
		if v, ok := r.aliases[name]; ok {
			aliases = append(aliases, map[string]string{"alias": "champion", "version": strconv.Itoa(v)})
		}
		for a, v := range r.named[name] {
			aliases = append(aliases, map[string]string{"alias": a, "version": strconv.Itoa(v)})
		}
		json.NewEncoder(w).Encode(map[string]any{"registered_model": map[string]any{"name": name, "tags": tags, "aliases": aliases}})
	case p == "/api/2.0/mlflow/model-versions/get-download-uri":
		v, _ := strconv.Atoi(q.Get("version"))
		if _, ok := r.versions[name][v]; !ok {
			r.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "no such version")
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"artifact_uri": fmt.Sprintf("%s:/1/models/%s-%d/artifacts", r.scheme, name, v)})
	case strings.HasPrefix(p, "/api/2.0/mlflow-artifacts/artifacts/1/models/"):
		// 1/models/<name>-<v>/artifacts/<file>
		parts := strings.SplitN(strings.TrimPrefix(p, "/api/2.0/mlflow-artifacts/artifacts/1/models/"), "/", 3)
		i := strings.LastIndex(parts[0], "-")
		v, _ := strconv.Atoi(parts[0][i+1:])
		dir, ok := r.versions[parts[0][:i]][v]
		file := map[string]string{"model.onnx": "model.onnx", "extra_files/model.json": "model.json"}[parts[2]]
		if !ok || file == "" {
			r.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "No such artifact")
			return
		}
		if file == "model.onnx" {
			r.fetches.Add(1)
		}
		http.ServeFile(w, req, filepath.Join(dir, file))
	default:
		r.fail(w, http.StatusNotFound, "ENDPOINT_NOT_FOUND", p)
	}
}

// observer counts what the poller reports.
type observer struct {
	mu      sync.Mutex
	errors  int
	refused map[string]int
	served  map[string]int
}

func (o *observer) ObserveRegistryPoll(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.errors++
	}
}

func (o *observer) ObserveRegistryRefused(model string, _ int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused[model]++
}

func (o *observer) ObserveRegistryServed(model string, v int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.served[model] = v
}

type harness struct {
	store  *repository.Store
	poller *mlflow.Poller
	obs    *observer
	logs   *syncWriter
	cache  string
	ready  []string // what the store served each time the poller said ready (OnServe)
}

// newHarness is a real store (ONNX Runtime loads and checks each version)
// fed by a poller of reg, caching in cache ("" : a new temporary directory).
func newHarness(t *testing.T, reg *registry, cache string, hc *http.Client, getenv func(string) string, names ...string) *harness {
	t.Helper()
	if cache == "" {
		cache = t.TempDir()
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	load := func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) }
	var poller *mlflow.Poller // experiments' aliases resolve through it, as the server wires them
	resolve := func(model, alias string) (int, error) { return poller.Resolve(model, alias) }
	store := repository.New(cache, load, repository.Options{Logger: logger, ResolveAlias: resolve})
	t.Cleanup(func() { store.Close() })
	client, err := mlflow.NewClient(reg.server.URL, getenv, hc)
	if err != nil {
		t.Fatal(err)
	}
	obs := &observer{refused: map[string]int{}, served: map[string]int{}}
	h := &harness{store: store, obs: obs, logs: logs, cache: cache}
	onServe := func() { h.ready = append(h.ready, fmt.Sprint(store.Models())) }
	poller = mlflow.NewPoller(client, store, cache, mlflow.Options{Models: names, Interval: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, Logger: logger, Observer: obs, OnServe: onServe})
	h.poller = poller
	return h
}

// syncWriter serialises writes: the poller's goroutine and the test log concurrently.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// serving is the version of name the store serves (0: none).
func (h *harness) serving(name string) int {
	m, release, err := h.store.Acquire(name, 0)
	if err != nil {
		return 0
	}
	defer release()
	return m.Metadata().Version
}

func (h *harness) poll(t *testing.T) {
	t.Helper()
	if err := h.poller.Poll(context.Background()); err != nil {
		t.Fatalf("poll: %v", err)
	}
}

// cached lists the entries of cache/name.
func (h *harness) cached(t *testing.T, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.cache, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestPollerServesTheAliasVersionAndFollowsItBothWays(t *testing.T) {
	reg := newRegistry(t)
	reg.register(fixture.Model, 3, fixture.Model, nil)
	reg.register(fixture.Model, 7, fixture.Model, nil)
	h := newHarness(t, reg, "", nil, nil)

	h.poll(t) // no alias yet: nothing served, no error
	if v := h.serving(fixture.Model); v != 0 {
		t.Fatalf("serving version %d before the alias exists", v)
	}
	for _, v := range []int{3, 7, 3} { // promote, then roll back
		reg.setAlias(fixture.Model, v)
		h.poll(t)
		if got := h.serving(fixture.Model); got != v {
			t.Fatalf("alias -> %d: serving version %d", v, got)
		}
		m, release, _ := h.store.Acquire(fixture.Model, 0)
		if err := fixture.PredictExamples(m); err != nil {
			t.Error(err)
		}
		release()
		if got := fmt.Sprint(h.cached(t, fixture.Model)); got != fmt.Sprintf("[.serving %d]", v) {
			t.Errorf("cache after alias -> %d: %s", v, got)
		}
		if h.obs.served[fixture.Model] != v {
			t.Errorf("observer told version %d, want %d", h.obs.served[fixture.Model], v)
		}
	}
	fetches := reg.fetches.Load()
	h.poll(t)
	if reg.fetches.Load() != fetches {
		t.Error("the version served was downloaded again")
	}
}

func TestPollerRefusesABadVersionAndKeepsServing(t *testing.T) {
	tests := []struct {
		name     string
		register func(reg *registry) // registers version 2 of fixture.Model
		want     string              // in the log line
	}{
		{"onnx altered after export (sha256)", func(reg *registry) {
			dir := reg.register(fixture.Model, 2, fixture.Model, nil)
			f, _ := os.OpenFile(filepath.Join(dir, "model.onnx"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("x"))
			f.Close()
		}, "sha256"},
		{"examples the graph does not reproduce", func(reg *registry) {
			reg.register(fixture.Model, 2, fixture.Model, func(m map[string]any) {
				ex := m["examples"].([]any)[0].(map[string]any)
				ex["prediction"] = ex["prediction"].(float64) + 5
			})
		}, "example"},
		{"another task", func(reg *registry) {
			reg.register(fixture.Model, 2, fixture.Classifier, func(m map[string]any) { m["name"] = fixture.Model })
		}, "is a classification model"},
		{"other inputs", func(reg *registry) {
			reg.register(fixture.Model, 2, fixture.Model, func(m map[string]any) {
				m["inputs"].([]any)[0].(map[string]any)["name"] = "pickup_zone"
			})
		}, "takes inputs"},
		{"model.json of another model", func(reg *registry) {
			reg.register(fixture.Model, 2, fixture.Model, func(m map[string]any) { m["name"] = "other" })
		}, `names the model \"other\"`},
		{"files outside the artifact proxy", func(reg *registry) {
			reg.register(fixture.Model, 2, fixture.Model, nil)
			reg.set(func(r *registry) { r.scheme = "s3" })
		}, "--serve-artifacts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t)
			reg.register(fixture.Model, 1, fixture.Model, nil)
			reg.setAlias(fixture.Model, 1)
			h := newHarness(t, reg, "", nil, nil)
			h.poll(t)
			tt.register(reg)
			reg.setAlias(fixture.Model, 2)
			h.poll(t)
			h.poll(t) // not tried again
			if v := h.serving(fixture.Model); v != 1 {
				t.Fatalf("serving version %d, want 1 (the version refused must not replace it)", v)
			}
			if n := h.obs.refused[fixture.Model]; n != 1 {
				t.Errorf("refused %d times, want once", n)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "registry version refused") || !strings.Contains(logs, tt.want) {
				t.Errorf("no refusal logged with %q:\n%s", tt.want, logs)
			}
			if got := fmt.Sprint(h.cached(t, fixture.Model)); got != "[.serving 1]" {
				t.Errorf("cache keeps %s, want the version serving only", got)
			}
		})
	}
}

func TestRegistryDownOrSlowKeepsServing(t *testing.T) {
	reg := newRegistry(t)
	reg.register(fixture.Model, 4, fixture.Model, nil)
	reg.setAlias(fixture.Model, 4)
	h := newHarness(t, reg, "", &http.Client{Timeout: 100 * time.Millisecond}, nil)
	h.poll(t)

	for _, fault := range []func(r *registry){
		func(r *registry) { r.down = true },
		func(r *registry) { r.delay = 300 * time.Millisecond },
	} {
		reg.set(func(r *registry) { r.down, r.delay = false, 0; fault(r) })
		if err := h.poller.Poll(context.Background()); err == nil {
			t.Error("a poll of a registry down or slow succeeded")
		}
		if v := h.serving(fixture.Model); v != 4 {
			t.Errorf("serving %d while the registry fails, want 4", v)
		}
	}
	if h.obs.errors != 2 {
		t.Errorf("observer counted %d failed polls, want 2", h.obs.errors)
	}
	reg.set(func(r *registry) { r.delay = 0 })
	h.poll(t)
}

func TestRunBacksOffWhileTheRegistryIsDownAndRecovers(t *testing.T) {
	reg := newRegistry(t)
	reg.register(fixture.Model, 1, fixture.Model, nil)
	reg.register(fixture.Model, 2, fixture.Model, nil)
	reg.setAlias(fixture.Model, 1)
	reg.set(func(r *registry) { r.down = true })
	h := newHarness(t, reg, "", nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.poller.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()

	// Polls every 20 ms while answered; down, the waits double up to 200 ms
	// (20, 40, 80, 160, 200, 200 …): about 7 polls in a second instead of 50.
	time.Sleep(time.Second)
	if n := reg.calls.Load(); n > 15 {
		t.Errorf("%d calls in 1s to a registry down: no back-off", n)
	}
	if !strings.Contains(h.logs.String(), "model registry unreachable") {
		t.Error("registry errors not logged")
	}
	reg.set(func(r *registry) { r.down = false; r.aliases[fixture.Model] = 2 })
	deadline := time.Now().Add(5 * time.Second)
	for h.serving(fixture.Model) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("version 2 not served after the registry came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestARestartWhileTheRegistryIsDownServesTheCache(t *testing.T) {
	reg := newRegistry(t)
	reg.champions(5, 2)
	first := newHarness(t, reg, "", nil, nil) // every registered model
	first.poll(t)
	first.store.Close()

	reg.set(func(r *registry) { r.down = true })
	again := newHarness(t, reg, first.cache, nil, nil)
	if n := again.poller.ServeCached(); n != 2 {
		t.Fatalf("served %d cached models, want 2", n)
	}
	if again.serving(fixture.Model) != 5 || again.serving(fixture.Classifier) != 2 {
		t.Errorf("after a restart: %v", again.store.Models())
	}
	if err := again.poller.Poll(context.Background()); err == nil {
		t.Error("poll of a registry down succeeded")
	}
	if again.serving(fixture.Model) != 5 {
		t.Error("the cached version stopped serving")
	}
}

func TestOnlyTheModelsNamedAreServed(t *testing.T) {
	reg := newRegistry(t)
	reg.champions(1, 1)
	h := newHarness(t, reg, "", nil, nil, fixture.Classifier)
	h.poll(t)
	if got := fmt.Sprint(h.store.Models()); got != "[{tip_given [1] 1}]" {
		t.Errorf("serving %s, want the classifier only", got)
	}
}

// TestReadyOnceEveryModelIsServed: the server turns ready after a poll that
// served every model the registry has, never between two of them, and at
// a restart after the cache served them all.
func TestReadyOnceEveryModelIsServed(t *testing.T) {
	reg := newRegistry(t)
	reg.champions(1, 1)
	h := newHarness(t, reg, "", nil, nil)
	h.poll(t)
	both := "[{tip_given [1] 1} {trip_duration [1] 1}]"
	if len(h.ready) == 0 || h.ready[0] != both {
		t.Fatalf("ready with %q, want ready first with both models, %s", h.ready, both)
	}
	restarted := newHarness(t, reg, h.cache, nil, nil)
	if served := restarted.poller.ServeCached(); served != 2 {
		t.Fatalf("the cache served %d models, want 2", served)
	}
	if len(restarted.ready) != 1 || restarted.ready[0] != both {
		t.Fatalf("ready after a restart with %q, want once, with %s", restarted.ready, both)
	}
}

func TestCredentialsGoInHeadersAndNeverInLogs(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		header string
	}{
		{"token", map[string]string{mlflow.EnvToken: "s3cret-token"}, "Bearer s3cret-token"},
		{"basic auth", map[string]string{mlflow.EnvUsername: "ana", mlflow.EnvPassword: "s3cret-pw"}, "Basic YW5hOnMzY3JldC1wdw=="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t)
			reg.register(fixture.Model, 1, fixture.Model, nil)
			reg.setAlias(fixture.Model, 1)
			reg.set(func(r *registry) { r.auth = tt.header })
			h := newHarness(t, reg, "", nil, func(k string) string { return tt.env[k] })
			h.poll(t)
			if h.serving(fixture.Model) != 1 {
				t.Fatal("not served with credentials")
			}
			reg.set(func(r *registry) { r.auth = "something else" })
			if err := h.poller.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("refused credentials: err = %v", err)
			}
			for _, secret := range tt.env {
				if strings.Contains(h.logs.String(), secret) {
					t.Errorf("a credential is in the logs:\n%s", h.logs.String())
				}
			}
		})
	}
	if _, err := mlflow.NewClient("http://ana:pw@127.0.0.1:5000", os.Getenv, nil); err == nil ||
		strings.Contains(err.Error(), "pw") || !strings.Contains(err.Error(), mlflow.EnvPassword) {
		t.Errorf("URL with credentials: err = %v", err)
	}
	for _, bad := range []string{"127.0.0.1:5000", "ftp://x", "http://"} {
		if _, err := mlflow.NewClient(bad, os.Getenv, nil); err == nil {
			t.Errorf("accepted registry URL %q", bad)
		}
	}
}
