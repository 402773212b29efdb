package main

import (
	"testing"

	"skl2go/internal/docgen"
)

// docs/streaming.md's table of flags is the flag set's, as docs/server.md's
// is the server's.
func TestDocsListEveryFlag(t *testing.T) {
	var c config
	fs, _ := flagSet(&c, func(string) string { return "" })
	docgen.Check(t, "../../../docs/streaming.md", "flags", docgen.FlagTable(fs))
}
