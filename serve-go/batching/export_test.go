package batching

// The batcher's bookkeeping, for the tests' invariant checks.

// LeadersForTest returns how many runs the batcher counts as in progress.
func (m *Model) LeadersForTest() int { m.mu.Lock(); defer m.mu.Unlock(); return m.leaders }

// QueueForTest returns the states of the queued requests.
func (m *Model) QueueForTest() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s []int32
	for _, q := range m.queue {
		s = append(s, q.state.Load())
	}
	return s
}
