package mlflow_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"skl2go/internal/fixture"
	"skl2go/mlflow"
)

// experiment says what the store runs on the model: "none", or the id and
// each variant as name=version.
func (h *harness) experiment() string {
	e := h.store.Experiment(fixture.Model)
	if e == nil {
		return "none"
	}
	parts := []string{e.ID}
	for _, v := range e.Variants {
		parts = append(parts, fmt.Sprintf("%s=%d", v.Name, v.Version))
	}
	return strings.Join(parts, " ")
}

func (h *harness) served() string { return fmt.Sprint(h.store.Models()) }

const byAlias = `{"id":"ab","variants":[{"name":"control","alias":"champion","weight":90},{"name":"challenger","alias":"challenger","weight":10}]}`

// TestRegistryExperimentFollowsItsAliases: an experiment in the registered
// model's tag runs beside the champion with its aliases resolved; it follows
// an alias that moves, keeps running when an alias goes or the registry is
// down (and after a restart meanwhile, from the cache), and ends with its tag.
func TestRegistryExperimentFollowsItsAliases(t *testing.T) {
	reg := newRegistry(t)
	for _, v := range []int{1, 2, 3} {
		reg.register(fixture.Model, v, fixture.Model, nil)
	}
	reg.setAlias(fixture.Model, 1)
	h := newHarness(t, reg, "", nil, nil)
	h.poll(t)

	steps := []struct {
		name       string
		change     func(r *registry)
		experiment string
		served     string
		cached     string
		log        string
	}{
		{"started", func(r *registry) {
			r.named[fixture.Model] = map[string]int{"challenger": 2}
			r.tags[fixture.Model] = map[string]string{mlflow.ExperimentTag: byAlias}
		}, "ab control=1 challenger=2", "[{trip_duration [1 2] 1}]", "[.aliases.json .serving 1 2 experiment.json]", `"msg":"experiment running"`},
		{"challenger moved", func(r *registry) { r.named[fixture.Model]["challenger"] = 3 },
			"ab control=1 challenger=3", "[{trip_duration [1 3] 1}]", "[.aliases.json .serving 1 3 experiment.json]", `"variants":"control=v1:90, challenger=v3:10"`},
		{"alias gone", func(r *registry) { delete(r.named[fixture.Model], "challenger") },
			"ab control=1 challenger=3", "[{trip_duration [1 3] 1}]", "[.aliases.json .serving 1 3 experiment.json]",
			`registered model trip_duration has no alias \"challenger\"`},
		{"bad tag", func(r *registry) {
			r.named[fixture.Model]["challenger"] = 3
			r.tags[fixture.Model][mlflow.ExperimentTag] = `{"id":"ab","variants":[]}`
		}, "ab control=1 challenger=3", "[{trip_duration [1 3] 1}]", "[.aliases.json .serving 1 3 experiment.json]", "variants: at least one variant"},
		{"a version that is not registered", func(r *registry) {
			r.tags[fixture.Model][mlflow.ExperimentTag] = `{"id":"ab","variants":[{"name":"a","alias":"champion","weight":1},{"name":"b","version":9,"weight":1}]}`
		}, "ab control=1 challenger=3", "[{trip_duration [1 3] 1}]", "[.aliases.json .serving 1 3 experiment.json]", "registry version refused for the experiment"},
		{"fixed", func(r *registry) { r.tags[fixture.Model][mlflow.ExperimentTag] = byAlias },
			"ab control=1 challenger=3", "[{trip_duration [1 3] 1}]", "[.aliases.json .serving 1 3 experiment.json]", ""},
	}
	for _, step := range steps {
		reg.set(step.change)
		h.poll(t)
		if got := h.experiment(); got != step.experiment {
			t.Errorf("%s: experiment %q, want %q", step.name, got, step.experiment)
		}
		if got := h.served(); got != step.served {
			t.Errorf("%s: served %s, want %s", step.name, got, step.served)
		}
		if got := fmt.Sprint(h.cached(t, fixture.Model)); got != step.cached {
			t.Errorf("%s: cache %s, want %s", step.name, got, step.cached)
		}
		if !strings.Contains(h.logs.String(), step.log) {
			t.Errorf("%s: log lacks %q:\n%s", step.name, step.log, h.logs.String())
		}
	}
	if h.serving(fixture.Model) != 1 {
		t.Errorf("a request pinning no version outside the experiment gets version %d, want the champion's 1", h.serving(fixture.Model))
	}

	// The registry down: the experiment runs on; a replica restarted meanwhile runs it from its cache.
	reg.set(func(r *registry) { r.down = true })
	if err := h.poller.Poll(context.Background()); err == nil {
		t.Fatal("a poll of a registry down succeeded")
	}
	if got := h.experiment(); got != "ab control=1 challenger=3" {
		t.Errorf("registry down: experiment %q", got)
	}
	restarted := newHarness(t, reg, h.cache, nil, nil)
	if n := restarted.poller.ServeCached(); n != 1 {
		t.Fatalf("served %d cached models, want 1", n)
	}
	if got := restarted.experiment(); got != "ab control=1 challenger=3" {
		t.Errorf("restarted with the registry down: experiment %q", got)
	}

	// The registry back: the champion moves to the challenger's version and the tag goes (a promotion).
	reg.set(func(r *registry) {
		r.down = false
		r.aliases[fixture.Model] = 3
		delete(r.tags[fixture.Model], mlflow.ExperimentTag)
	})
	restarted.poll(t)
	if got := restarted.experiment(); got != "none" {
		t.Errorf("after the promotion: experiment %q", got)
	}
	if got := restarted.served(); got != "[{trip_duration [3] 3}]" {
		t.Errorf("after the promotion: served %s", got)
	}
	if got := fmt.Sprint(restarted.cached(t, fixture.Model)); got != "[.serving 3]" {
		t.Errorf("after the promotion: cache %s", got)
	}
}
