//go:build !linux

package http

// setThreadIdle does nothing where threads have no priority of their own
// that Go can set.
func setThreadIdle(bool) error { return nil }
