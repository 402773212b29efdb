//go:build linux

package http

import (
	"syscall"
	"testing"
)

// TestLowerThreadPriority: the mirror's thread is under SCHED_IDLE, as the
// kernel reports it. The test's goroutine stays locked to the thread, which
// ends with it, so no other test inherits the policy.
func TestLowerThreadPriority(t *testing.T) {
	done := make(chan error)
	go func() {
		if err := lowerThreadPriority(); err != nil {
			done <- err
			return
		}
		policy, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETSCHEDULER, uintptr(syscall.Gettid()), 0, 0)
		switch {
		case errno != 0:
			done <- errno
		case policy != schedIdle:
			done <- syscall.EINVAL
			t.Errorf("policy %d, want SCHED_IDLE (%d)", policy, schedIdle)
		default:
			done <- nil
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
