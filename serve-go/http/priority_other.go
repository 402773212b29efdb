//go:build !linux

package http

// lowerThreadPriority does nothing where threads have no priority of their
// own that Go can set.
func lowerThreadPriority() error { return nil }
