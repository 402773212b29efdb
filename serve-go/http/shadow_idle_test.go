package http_test

import (
	"context"
	"slices"
	"testing"
	"time"

	skhttp "skl2go/http"
)

// TestWaitIdle: the mirror pauses once, then, while requests are in flight,
// pauses for a while that doubles up to its bound; it gives up when the
// context ends. The pauses are recorded, not slept.
func TestWaitIdle(t *testing.T) {
	const least, most = 50 * time.Microsecond, 400 * time.Microsecond
	tests := []struct {
		name       string
		busyLooks  int // idle() is false this many times, then true
		cancelAt   int // the pause with this number (1-based) finds ctx ended; 0: never
		wantPauses []time.Duration
		wantErr    bool
	}{
		{"idle at once: one pause", 0, 0, []time.Duration{50e3}, false},
		{"busy once", 1, 0, []time.Duration{50e3, 100e3}, false},
		{"busy long: bounded", 5, 0, []time.Duration{50e3, 100e3, 200e3, 400e3, 400e3, 400e3}, false},
		{"context ends while busy", 100, 3, []time.Duration{50e3, 100e3, 200e3}, true},
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
			err := skhttp.WaitIdle(ctx, idle, least, most, pause)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tt.wantErr)
			}
			if !slices.Equal(pauses, tt.wantPauses) {
				t.Errorf("pauses %v, want %v", pauses, tt.wantPauses)
			}
		})
	}
}
