// Package docgen keeps the reference tables in docs/ that the code defines
// (flags, endpoints, metrics) equal to the code: a test renders each table
// and compares it with the document, between the markers
// <!-- begin NAME --> and <!-- end NAME -->. Run the tests with
// SKL2GO_UPDATE_DOCS=1 to rewrite the tables instead.
package docgen

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
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

var (
	envRE     = regexp.MustCompile(` ?\(env (SKL2GO_[A-Z_]+)\)`)
	defaultRE = regexp.MustCompile(` ?\(default: ([^)]*)\)`)
)

// FlagTable renders a command's flag set as a Markdown table: names,
// environment variables, defaults and descriptions. A flag's usage names
// its environment variable, "(env SKL2GO_…)", and, where the default is not
// one fixed value, "(default: …)"; a usage with a `word` names the
// argument.
func FlagTable(fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		env := ""
		if m := envRE.FindStringSubmatch(usage); m != nil {
			env = "`" + m[1] + "`"
		}
		def := "`" + f.DefValue + "`"
		if m := defaultRE.FindStringSubmatch(usage); m != nil {
			def = m[1]
		} else if f.DefValue == "" {
			def = ""
		}
		usage = defaultRE.ReplaceAllString(envRE.ReplaceAllString(usage, ""), "")
		name := "`--" + f.Name
		if strings.Contains(f.Usage, "`") { // the usage names the argument
			name += " " + arg
		} else if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !isBool {
			name += " " + argument(f.DefValue)
		}
		fmt.Fprintf(&b, "| %s` | %s | %s | %s |\n", name, env, Cell(def), Cell(usage))
	})
	return b.String()
}

// argument names a flag's argument from its default: a duration, a number
// or a word.
func argument(def string) string {
	if _, err := time.ParseDuration(def); err == nil && def != "0" {
		return "D"
	}
	if def == "true" || def == "false" {
		return "BOOL"
	}
	if _, err := strconv.Atoi(def); err == nil {
		return "N"
	}
	return "VALUE"
}
