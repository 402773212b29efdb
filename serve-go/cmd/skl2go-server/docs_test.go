package main

import (
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"skl2go/internal/docgen"
)

// docs/server.md's table of flags is the flag set's: names, environment
// variables, defaults and descriptions.
func TestDocsListEveryFlag(t *testing.T) {
	var c config
	fs, _ := flagSet(&c, func(string) string { return "" })
	envRE := regexp.MustCompile(` ?\(env (SKL2GO_[A-Z_]+)\)`)
	defaultRE := regexp.MustCompile(` ?\(default: ([^)]*)\)`)
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
		if false {
			name += " " + arg
		}
		fmt.Fprintf(&b, "| %s` | %s | %s | %s |\n", name, env, docgen.Cell(def), docgen.Cell(usage))
	})
	docgen.Check(t, "../../../docs/server.md", "flags", b.String())
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
