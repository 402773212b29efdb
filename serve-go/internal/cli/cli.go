// Package cli holds what the commands (skl2go-server, skl2go-stream) read
// from their command line alike.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns the slog logger of --log-level (debug, info, warn,
// error) and --log-format (json or text), writing to stderr.
func NewLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, got %q", format)
}
