// Package docgen keeps the reference tables in docs/ that the code defines
// (flags, endpoints, metrics) equal to the code: a test renders each table
// and compares it with the document, between the markers
// <!-- begin NAME --> and <!-- end NAME -->. Run the tests with
// SKL2GO_UPDATE_DOCS=1 to rewrite the tables instead.
package docgen

import (
	"os"
	"strings"
	"testing"
)

// Check compares section name of the document at path with want, or
// rewrites it when SKL2GO_UPDATE_DOCS=1.
func Check(t *testing.T, path, name, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	begin, end := "<!-- begin "+name+" -->\n", "<!-- end "+name+" -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no section %q: add the lines %q and %q", path, name, strings.TrimSpace(begin), end)
	}
	got := doc[i+len(begin) : j]
	if got == want {
		return
	}
	if os.Getenv("SKL2GO_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the %s table differs from the code; run `make docs` to rewrite it.\ngot:\n%s\nwant:\n%s", path, name, got, want)
}

// Cell escapes text for a Markdown table cell.
func Cell(text string) string {
	return strings.ReplaceAll(text, "|", `\|`)
}
