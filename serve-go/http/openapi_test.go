package http_test

import (
	"regexp"
	"strings"
	"testing"

	skhttp "skl2go/http"
)

// TestOpenAPIDocumentIsServedAndRouted checks that /openapi.yaml serves the
// document and that each operation it documents reaches a handler (neither
// "no such endpoint" nor a wrong method). Schemathesis checks the answers
// against the document on the live topology (tests/test_openapi.py).
func TestOpenAPIDocumentIsServedAndRouted(t *testing.T) {
	s, _ := newServer(t, skhttp.Config{})
	r := do(t, s.Handler(), "GET", "/openapi.yaml", "", "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/yaml" || !strings.HasPrefix(r.raw, "openapi: 3.") {
		t.Fatalf("GET /openapi.yaml = %d %s %.40q", r.status, r.header.Get("Content-Type"), r.raw)
	}
	pathRE := regexp.MustCompile(`^  (/\S*):$`)
	methodRE := regexp.MustCompile(`^    (get|post):$`)
	operations := 0
	var path string
	for _, line := range strings.Split(r.raw, "\n") {
		if m := pathRE.FindStringSubmatch(line); m != nil {
			path = strings.NewReplacer("{name}", "trip_duration", "{version}", "1").Replace(m[1])
			continue
		}
		m := methodRE.FindStringSubmatch(line)
		if m == nil || path == "" {
			continue
		}
		operations++
		method := strings.ToUpper(m[1])
		got := do(t, s.Handler(), method, path, "application/json", "{}")
		msg, _ := got.body["error"].(string)
		if got.status == 405 || strings.HasPrefix(msg, "no such endpoint") {
			t.Errorf("documented %s %s: %d %s", method, path, got.status, got.raw)
		}
	}
	if operations < 18 {
		t.Errorf("found %d documented operations; the scan of the document is broken", operations)
	}
}
