//go:build linux

package http

import (
	"runtime"
	"syscall"
	"unsafe"
)

// schedIdle is Linux's SCHED_IDLE policy: a thread that runs only on a CPU
// no other thread wants, and yields it as soon as one does.
const schedIdle = 5

// lowerThreadPriority locks the calling goroutine to its OS thread and puts
// that thread under SCHED_IDLE (Linux schedules threads, not processes, so
// the rest of the server keeps its own policy). The thread ends with the
// goroutine, still locked, so no other goroutine inherits its policy.
func lowerThreadPriority() error {
	runtime.LockOSThread()
	var param struct{ priority int32 } // struct sched_param; SCHED_IDLE requires 0
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(syscall.Gettid()), schedIdle,
		uintptr(unsafe.Pointer(&param)))
	if errno != 0 {
		return errno
	}
	return nil
}
