package skl2go_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"skl2go"
)

// TestAroundRun: a run is wrapped by the context's before and after, in
// that order, also when it fails; without them it runs alone.
func TestAroundRun(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		hooks   bool
		runErr  error
		wantLog []string
	}{
		{"hooks", true, nil, []string{"before", "run", "after"}},
		{"hooks, the run fails", true, boom, []string{"before", "run", "after"}},
		{"no hooks", false, nil, []string{"run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			ctx := context.Background()
			if tt.hooks {
				ctx = skl2go.WithAroundRun(ctx, func() { log = append(log, "before") }, func() { log = append(log, "after") })
			}
			err := skl2go.AroundRun(ctx, func() error { log = append(log, "run"); return tt.runErr })
			if !errors.Is(err, tt.runErr) {
				t.Errorf("err = %v, want %v", err, tt.runErr)
			}
			if !slices.Equal(log, tt.wantLog) {
				t.Errorf("calls %v, want %v", log, tt.wantLog)
			}
		})
	}
}
