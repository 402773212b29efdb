//go:build linux

package http

import (
	"runtime"
	"syscall"
	"testing"
)

// TestSetThreadIdle: the mirror's thread goes under SCHED_IDLE for a model
// run and back under SCHED_OTHER after, as the kernel reports it.
func TestSetThreadIdle(t *testing.T) {
	runtime.LockOSThread() // the policy is the thread's; this goroutine's thread ends with it
	tests := []struct {
		idle       bool
		wantPolicy uintptr
	}{
		{true, schedIdle},
		{false, schedOther},
		{true, schedIdle},
		{false, schedOther},
	}
	for _, tt := range tests {
		if err := setThreadIdle(tt.idle); err != nil {
			t.Fatalf("setThreadIdle(%v): %v", tt.idle, err)
		}
		policy, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETSCHEDULER, uintptr(syscall.Gettid()), 0, 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		if policy != tt.wantPolicy {
			t.Errorf("after setThreadIdle(%v): policy %d, want %d", tt.idle, policy, tt.wantPolicy)
		}
	}
}
