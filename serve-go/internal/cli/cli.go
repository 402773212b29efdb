// Package cli holds what the commands (skl2go-server, skl2go-stream) read
// from their command line alike.
package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
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

// Env returns the default of a flag: environment variable SKL2GO_<name>
// from getenv when set, else def.
func Env(getenv func(string) string) func(name, def string) string {
	return func(name, def string) string {
		if v := getenv("SKL2GO_" + name); v != "" {
			return v
		}
		return def
	}
}

// Checks converts flag values read as text, collecting every error so that
// a command line is refused with all that is wrong with it at once.
type Checks struct {
	errs []error
}

// Int parses flag name's value s, an integer of at least min.
func (c *Checks) Int(name, s string, min int64) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < min {
		c.errs = append(c.errs, fmt.Errorf("--%s must be an integer of at least %d, got %q", name, min, s))
	}
	return n
}

// Duration parses flag name's value s, a duration of at least min.
func (c *Checks) Duration(name, s string, min time.Duration) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d < min {
		c.errs = append(c.errs, fmt.Errorf("--%s must be a duration of at least %v such as 20s, got %q", name, min, s))
	}
	return d
}

// Add records an error found another way (nil is ignored).
func (c *Checks) Add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

// Err joins the errors collected, nil when there were none.
func (c *Checks) Err() error { return errors.Join(c.errs...) }
