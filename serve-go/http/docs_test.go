package http

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"skl2go"
	"skl2go/internal/docgen"
)

const serverDoc = "../../docs/server.md"

// docs/server.md's table of endpoints is the route table's.
func TestDocsListEveryEndpoint(t *testing.T) {
	s := NewServer(noModels{}, Config{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	var b strings.Builder
	b.WriteString("| method | path | route label | answer |\n|---|---|---|---|\n")
	for _, e := range s.endpoints() {
		if e.Path == "/v2/{$}" {
			continue // the same as /v2, with its slash
		}
		fmt.Fprintf(&b, "| %s | `%s` | `%s` | %s |\n", e.Method, e.Path, e.Name, docgen.Cell(e.Doc))
	}
	docgen.Check(t, serverDoc, "endpoints", b.String())
}

// docs/server.md's table of metrics is what the server registers: every
// skl2go_ series, its labels and its help.
func TestDocsListEveryMetric(t *testing.T) {
	rec := &describer{}
	newMetrics(rec, noModels{}, skl2go.NewLimiter(1, 1, time.Second))
	NewBatchMetrics(rec)
	NewRegistryMetrics(rec)
	rec.MustRegister(newInferenceLogCollector(nil))
	descRE := regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), .*variableLabels: \{([^}]*)\}\}$`)
	var rows []string
	for _, d := range rec.descs {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		name, _ := strconv.Unquote(m[1])
		help, _ := strconv.Unquote(m[2])
		if !strings.HasPrefix(name, "skl2go_") {
			continue // the Go runtime's and the process's, listed as such
		}
		labels := strings.ReplaceAll(m[3], ",", ", ")
		rows = append(rows, fmt.Sprintf("| `%s` | %s | %s |\n", name, labels, docgen.Cell(help)))
	}
	slices.Sort(rows)
	want := "| series | labels | meaning |\n|---|---|---|\n" + strings.Join(rows, "")
	docgen.Check(t, serverDoc, "metrics", want)
}

// describer is a prometheus.Registerer that keeps the descriptors of what
// is registered.
type describer struct{ descs []*prometheus.Desc }

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		d.descs = append(d.descs, desc)
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

// noModels is a store that serves nothing.
type noModels struct{}

func (noModels) Acquire(name string, version int) (skl2go.Model, func(), error) {
	return nil, nil, skl2go.Errorf(skl2go.ENOTFOUND, "no models")
}
func (noModels) Models() []skl2go.ModelSummary { return nil }
func (noModels) LoadFailures() map[string]int  { return nil }
