package skl2go

import "context"

type aroundKey struct{}

// WithAroundRun returns a context whose model runs call before just ahead of
// the runtime's own computation (ONNX Runtime's Run, a cgo call) and after
// just behind it, on the same goroutine. An experiment's mirror lowers its
// OS thread's CPU priority for exactly that call: in it the thread holds
// none of the Go scheduler's Ps, so the kernel may keep it off the CPU
// without stalling the requests' goroutines.
func WithAroundRun(ctx context.Context, before, after func()) context.Context {
	return context.WithValue(ctx, aroundKey{}, [2]func(){before, after})
}

// AroundRun calls run between the context's before and after functions
// (WithAroundRun), or alone when it has none.
func AroundRun(ctx context.Context, run func() error) error {
	hooks, ok := ctx.Value(aroundKey{}).([2]func())
	if !ok {
		return run()
	}
	hooks[0]()
	defer hooks[1]()
	return run()
}
