package main

import (
	"testing"

	"skl2go/internal/docgen"
)

// docs/server.md's table of flags is the flag set's: names, environment
// variables, defaults and descriptions.
func TestDocsListEveryFlag(t *testing.T) {
	var c config
	fs, _ := flagSet(&c, func(string) string { return "" })
	docgen.Check(t, "../../../docs/server.md", "flags", docgen.FlagTable(fs))
}
