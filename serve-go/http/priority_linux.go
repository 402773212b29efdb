//go:build linux

package http

import (
	"syscall"
	"unsafe"
)

// Linux's scheduling policies: SCHED_OTHER, the default, and SCHED_IDLE, a
// thread that runs only on a CPU no other thread wants, and yields it as
// soon as one does.
const (
	schedOther = 0
	schedIdle  = 5
)

// setThreadIdle puts the calling OS thread under SCHED_IDLE (idle true) or
// back under SCHED_OTHER. Linux schedules threads, not processes, so the
// rest of the server keeps its own policy; the caller must have locked its
// goroutine to the thread (runtime.LockOSThread).
func setThreadIdle(idle bool) error {
	policy := schedOther
	if idle {
		policy = schedIdle
	}
	var param struct{ priority int32 } // struct sched_param; both policies require 0
	// Not RawSyscall: lowered to SCHED_IDLE, the thread is taken off a busy
	// CPU as the call returns, and only a call the Go runtime knows of
	// (entersyscall) lets another thread take its P meanwhile.
	_, _, errno := syscall.Syscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(syscall.Gettid()), uintptr(policy),
		uintptr(unsafe.Pointer(&param)))
	if errno != 0 {
		return errno
	}
	return nil
}
