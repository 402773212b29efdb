package skl2go_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"skl2go"
)

func TestParseExperiment(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"ok", `{"id":"e1","variants":[{"name":"a","version":1,"weight":90},{"name":"b","version":2,"weight":10}],"sticky":"X-User","mirror":{"name":"shadow","version":3}}`, ""},
		{"alias", `{"id":"e1","variants":[{"name":"a","alias":"champion","weight":1}]}`, ""},
		{"mirror without a name", `{"id":"e1","variants":[{"name":"a","version":1,"weight":1}],"mirror":{"version":2}}`, ""},
		{"mirror alias", `{"id":"e1","variants":[{"name":"a","version":1,"weight":1}],"mirror":{"name":"m","alias":"challenger"}}`, ""},
		{"bad alias", `{"id":"e1","variants":[{"name":"a","alias":"cham pion","weight":1}]}`, `variants[0].alias: "cham pion" is not a valid alias name`},
		{"empty alias", `{"id":"e1","variants":[{"name":"a","alias":"","weight":1}]}`, "variants[0]: missing version (a number) or alias"},
		{"alias not a string", `{"id":"e1","variants":[{"name":"a","alias":3,"weight":1}]}`, "experiment.json"},
		{"not json", `{`, "experiment.json"},
		{"unknown field", `{"id":"e1","variants":[],"split":1}`, `unknown field "split"`},
		{"bad id", `{"id":"","variants":[{"name":"a","version":1,"weight":1}]}`, "id must be"},
		{"no variants", `{"id":"e1","variants":[]}`, "variants: at least one"},
		{"zero sum", `{"id":"e1","variants":[{"name":"a","version":1,"weight":0}]}`, "weights must sum to more than 0"},
		{"float weight", `{"id":"e1","variants":[{"name":"a","version":1,"weight":0.5}]}`, "variants[0].weight must be an integer"},
		{"negative weight", `{"id":"e1","variants":[{"name":"a","version":1,"weight":-1}]}`, "variants[0].weight must be an integer, 0 or more"},
		{"missing weight", `{"id":"e1","variants":[{"name":"a","version":1}]}`, "variants[0].weight is missing"},
		{"float version", `{"id":"e1","variants":[{"name":"a","version":1.5,"weight":1}]}`, "variants[0].version: must be a positive integer"},
		{"zero version", `{"id":"e1","variants":[{"name":"a","version":0,"weight":1}]}`, "variants[0].version: must be a positive integer"},
		{"no version", `{"id":"e1","variants":[{"name":"a","weight":1}]}`, "variants[0]: missing version"},
		{"both", `{"id":"e1","variants":[{"name":"a","version":1,"alias":"x","weight":1}]}`, "variants[0]: give version or alias"},
		{"duplicate", `{"id":"e1","variants":[{"name":"a","version":1,"weight":1},{"name":"a","version":2,"weight":1}]}`, `variants[1].name: "a" is used twice`},
		{"bad name", `{"id":"e1","variants":[{"name":"a b","version":1,"weight":1}]}`, "variants[0].name must be"},
		{"mirror weight", `{"id":"e1","variants":[{"name":"a","version":1,"weight":1}],"mirror":{"name":"m","version":2,"weight":1}}`, "mirror.weight"},
		{"mirror name", `{"id":"e1","variants":[{"name":"a","version":1,"weight":1}],"mirror":{"name":"a","version":2}}`, "mirror.name"},
		{"bad sticky", `{"id":"e1","sticky":"x y","variants":[{"name":"a","version":1,"weight":1}]}`, "sticky must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := skl2go.ParseExperiment([]byte(tt.doc), "m")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestMirrorNameDefault: the mirror may be given as {"version": 3} alone.
func TestMirrorNameDefault(t *testing.T) {
	e, err := skl2go.ParseExperiment([]byte(`{"id":"e1","variants":[{"name":"a","version":1,"weight":1}],"mirror":{"version":2}}`), "m")
	if err != nil {
		t.Fatal(err)
	}
	if e.Mirror == nil || e.Mirror.Name != skl2go.DefaultMirrorName || e.Mirror.Version != 2 {
		t.Fatalf("mirror %+v, want %s version 2", e.Mirror, skl2go.DefaultMirrorName)
	}
}

// TestExperimentResolve: alias variants and mirror get the versions the
// resolver gives, versions named by number stay, and an alias that does
// not resolve is an error naming the field and the alias.
func TestExperimentResolve(t *testing.T) {
	registry := map[string]int{"champion": 3, "challenger": 5}
	resolve := func(alias string) (int, error) {
		if v, ok := registry[alias]; ok {
			return v, nil
		}
		return 0, fmt.Errorf("no alias %q", alias)
	}
	tests := []struct {
		name, doc    string
		want         string // the variants and mirror resolved, name=version
		wantVersions []int
		wantErr      string
	}{
		{"aliases", `{"id":"e","variants":[{"name":"control","alias":"champion","weight":9},{"name":"challenger","alias":"challenger","weight":1}]}`,
			"control=3 challenger=5", []int{3, 5}, ""},
		{"alias and version", `{"id":"e","variants":[{"name":"a","version":2,"weight":1},{"name":"b","alias":"challenger","weight":1}]}`,
			"a=2 b=5", []int{2, 5}, ""},
		{"mirror alias", `{"id":"e","variants":[{"name":"a","alias":"champion","weight":1}],"mirror":{"name":"m","alias":"challenger"}}`,
			"a=3 mirror m=5", []int{3, 5}, ""},
		{"versions only", `{"id":"e","variants":[{"name":"a","version":1,"weight":1}]}`, "a=1", []int{1}, ""},
		{"unknown alias", `{"id":"e","variants":[{"name":"a","alias":"champion","weight":1},{"name":"b","alias":"staging","weight":1}]}`,
			"", nil, `experiment.json: variants[1].alias "staging": no alias "staging"`},
		{"unknown mirror alias", `{"id":"e","variants":[{"name":"a","version":1,"weight":1}],"mirror":{"name":"m","alias":"gone"}}`,
			"", nil, `mirror.alias "gone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := skl2go.ParseExperiment([]byte(tt.doc), "m")
			if err != nil {
				t.Fatal(err)
			}
			r, err := e.Resolve(resolve)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range r.Variants {
				got = append(got, fmt.Sprintf("%s=%d", v.Name, v.Version))
			}
			if r.Mirror != nil {
				got = append(got, fmt.Sprintf("mirror %s=%d", r.Mirror.Name, r.Mirror.Version))
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("resolved %q, want %q", s, tt.want)
			}
			if fmt.Sprint(r.Versions()) != fmt.Sprint(tt.wantVersions) {
				t.Errorf("Versions() = %v, want %v", r.Versions(), tt.wantVersions)
			}
			for i, v := range e.Variants { // the parsed experiment is left as written
				if v.Alias != "" && v.Version != 0 {
					t.Errorf("variants[%d] of the original was resolved in place", i)
				}
			}
			if r.Assign("k").Version == 0 {
				t.Error("a resolved experiment assigned version 0")
			}
		})
	}
}

func TestExperimentCheckVersions(t *testing.T) {
	e, err := skl2go.ParseExperiment([]byte(`{"id":"e1","variants":[{"name":"a","version":1,"weight":1},{"name":"b","version":3,"weight":1}]}`), "m")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.CheckVersions([]int{1, 3}); err != nil {
		t.Fatal(err)
	}
	if err := e.CheckVersions([]int{1, 2}); err == nil || !strings.Contains(err.Error(), "variants[1].version: model m has no version 3") {
		t.Fatalf("got %v", err)
	}
}

func experiment(t *testing.T, weights ...int) *skl2go.Experiment {
	t.Helper()
	var parts []string
	for i, w := range weights {
		parts = append(parts, fmt.Sprintf(`{"name":"v%d","version":%d,"weight":%d}`, i, i+1, w))
	}
	e, err := skl2go.ParseExperiment([]byte(`{"id":"split","variants":[`+strings.Join(parts, ",")+`]}`), "m")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestAssignSplit: over 10,000 keys each variant's share is within two
// points of its weight, for several splits.
func TestAssignSplit(t *testing.T) {
	for _, weights := range [][]int{{90, 10}, {50, 50}, {1, 1, 1, 1}, {0, 100}, {70, 20, 10}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			e := experiment(t, weights...)
			const n = 10_000
			counts := map[string]int{}
			for i := range n {
				counts[e.Assign(fmt.Sprintf("request-%d", i)).Name]++
			}
			total := 0
			for _, w := range weights {
				total += w
			}
			for i, w := range weights {
				got := 100 * float64(counts[fmt.Sprintf("v%d", i)]) / n
				want := 100 * float64(w) / float64(total)
				if got < want-2 || got > want+2 {
					t.Errorf("variant v%d: %.2f%% of keys, want %.2f%% ± 2", i, got, want)
				}
			}
		})
	}
}

// TestAssignDeterministic: the variant depends on the experiment id and the
// key only: two parses (two replicas, a restart) agree on every key, and
// another experiment id reshuffles.
func TestAssignDeterministic(t *testing.T) {
	a, b := experiment(t, 50, 50), experiment(t, 50, 50)
	other, err := skl2go.ParseExperiment([]byte(`{"id":"other","variants":[{"name":"v0","version":1,"weight":50},{"name":"v1","version":2,"weight":50}]}`), "m")
	if err != nil {
		t.Fatal(err)
	}
	differ := 0
	for i := range 1000 {
		key := fmt.Sprintf("user-%d", i)
		if a.Assign(key) != b.Assign(key) {
			t.Fatalf("key %q: %v vs %v", key, a.Assign(key), b.Assign(key))
		}
		if a.Assign(key).Name != other.Assign(key).Name {
			differ++
		}
	}
	if differ < 300 {
		t.Errorf("another experiment id moved only %d of 1000 keys", differ)
	}
}

func TestAssignmentKey(t *testing.T) {
	e, err := skl2go.ParseExperiment([]byte(`{"id":"e","sticky":"X-User","variants":[{"name":"a","version":1,"weight":1}]}`), "m")
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if got := e.AssignmentKey(h.Get, "r1"); got != "r1" {
		t.Errorf("no sticky header: key %q, want the request id", got)
	}
	h.Set("X-User", "u7")
	if got := e.AssignmentKey(h.Get, "r1"); got != "u7" {
		t.Errorf("sticky header: key %q, want u7", got)
	}
}
