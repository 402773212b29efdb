package repository_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"skl2go/internal/fixture"
)

func writeExperiment(t *testing.T, root, doc string) {
	t.Helper()
	path := filepath.Join(root, fixture.Model, "experiment.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const twoVersions = `{"id":"e1","variants":[{"name":"control","version":1,"weight":90},{"name":"challenger","version":2,"weight":10}]}`

// TestExperimentHotReload: an experiment starts, changes, survives a bad
// file and a version that does not exist, and ends when its file goes;
// the versions it names stay loaded while it runs (Keep is 1).
func TestExperimentHotReload(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	fixture.CopyVersion(t, models, root, 1)
	fixture.CopyVersion(t, models, root, 2)
	fixture.CopyVersion(t, models, root, 3)
	var logs bytes.Buffer
	store := open(t, root, l, 1, &logs)
	defer store.Close()
	if e := store.Experiment(fixture.Model); e != nil {
		t.Fatalf("no file, yet experiment %v", e)
	}
	if got := served(store); got != "[{trip_duration [3] 3}]" {
		t.Fatalf("served %s", got)
	}

	steps := []struct {
		name, doc string // doc "" removes the file
		wantID    string
		served    string
		log       string
	}{
		{"started", twoVersions, "e1", "[{trip_duration [1 2 3] 3}]", `"msg":"experiment running"`},
		{"changed", `{"id":"e2","variants":[{"name":"a","version":3,"weight":1},{"name":"b","version":1,"weight":1}]}`, "e2", "[{trip_duration [1 3] 3}]", `"experiment":"e2"`},
		{"bad json", `{"id":`, "e2", "[{trip_duration [1 3] 3}]", "experiment refused; the experiment running keeps running"},
		{"bad field", `{"id":"e3","variants":[{"name":"a","version":1,"weight":1.5}]}`, "e2", "[{trip_duration [1 3] 3}]", "variants[0].weight must be an integer"},
		{"no such version", `{"id":"e3","variants":[{"name":"a","version":7,"weight":1}]}`, "e2", "[{trip_duration [1 3] 3}]", "variants[0].version: model trip_duration has no version 7"},
		{"alias without registry", `{"id":"e3","variants":[{"name":"a","alias":"challenger","weight":1}]}`, "e2", "[{trip_duration [1 3] 3}]", `variant a: alias \"challenger\" needs --registry`},
		{"ended", "", "", "[{trip_duration [3] 3}]", `"msg":"experiment ended"`},
	}
	for _, step := range steps {
		logs.Reset()
		if step.doc == "" {
			os.Remove(filepath.Join(root, fixture.Model, "experiment.json"))
		} else {
			writeExperiment(t, root, step.doc)
		}
		store.Sync()
		e := store.Experiment(fixture.Model)
		switch {
		case step.wantID == "" && e != nil:
			t.Errorf("%s: experiment %s still running", step.name, e.ID)
		case step.wantID != "" && (e == nil || e.ID != step.wantID):
			t.Errorf("%s: experiment %v, want %s", step.name, e, step.wantID)
		}
		if got := served(store); got != step.served {
			t.Errorf("%s: served %s, want %s", step.name, got, step.served)
		}
		if !strings.Contains(logs.String(), step.log) {
			t.Errorf("%s: log lacks %q:\n%s", step.name, step.log, logs.String())
		}
		// A second Sync with nothing changed logs nothing about the experiment.
		logs.Reset()
		store.Sync()
		if strings.Contains(logs.String(), "experiment") {
			t.Errorf("%s: a Sync without a change logged: %s", step.name, logs.String())
		}
	}
}

// TestExperimentAtStartUp: Open reads experiment.json and loads its versions.
func TestExperimentAtStartUp(t *testing.T) {
	root, l := t.TempDir(), newLoader(t)
	fixture.CopyVersion(t, models, root, 1)
	fixture.CopyVersion(t, models, root, 2)
	writeExperiment(t, root, twoVersions)
	store := open(t, root, l, 1, nil)
	defer store.Close()
	if e := store.Experiment(fixture.Model); e == nil || e.ID != "e1" {
		t.Fatalf("experiment %v, want e1", e)
	}
	if got := served(store); got != "[{trip_duration [1 2] 2}]" {
		t.Fatalf("served %s", got)
	}
}
