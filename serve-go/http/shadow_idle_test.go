package http_test

import (
	"context"
	"slices"
	"testing"
	"time"

	skhttp "skl2go/http"
)

// TestWaitIdle: the mirror, while requests are in flight, pauses for a
// while that doubles up to its bound, and pauses once first when asked
// (before a job's first run); it gives up when the context ends. The
// pauses are recorded, not slept.
func TestWaitIdle(t *testing.T) {
	const least, most = 50 * time.Microsecond, 400 * time.Microsecond
	tests := []struct {
		name       string
		pauseFirst bool
		busyLooks  int // idle() is false this many times, then true
		cancelAt   int // the pause with this number (1-based) finds ctx ended; 0: never
		wantPauses []time.Duration
		wantErr    bool
	}{
		{"idle: no pause", false, 0, 0, nil, false},
		{"idle, pause first: one pause", true, 0, 0, []time.Duration{50e3}, false},
		{"busy once", false, 1, 0, []time.Duration{50e3}, false},
		{"busy once, pause first", true, 1, 0, []time.Duration{50e3, 100e3}, false},
		{"busy long: bounded", false, 5, 0, []time.Duration{50e3, 100e3, 200e3, 400e3, 400e3}, false},
		{"context ends while busy", false, 100, 3, []time.Duration{50e3, 100e3, 200e3}, true},
		{"context ends in the first pause", true, 0, 1, []time.Duration{50e3}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var pauses []time.Duration
			pause := func(ctx context.Context, d time.Duration) error {
				pauses = append(pauses, d)
				if len(pauses) == tt.cancelAt {
					cancel()
				}
				return ctx.Err()
			}
			looks := 0
			idle := func() bool { looks++; return looks > tt.busyLooks }
			err := skhttp.WaitIdle(ctx, idle, tt.pauseFirst, least, most, pause)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tt.wantErr)
			}
			if !slices.Equal(pauses, tt.wantPauses) {
				t.Errorf("pauses %v, want %v", pauses, tt.wantPauses)
			}
		})
	}
}
