package inferencelog

// OpenPaused opens a sink whose writer starts only when start is called,
// so that a test can fill its queue.
func OpenPaused(opts Options) (s *Sink, start func(), err error) {
	s, err = newSink(opts)
	if err != nil {
		return nil, nil, err
	}
	return s, func() { go s.run() }, nil
}

// Queued is how many records were queued and are not written yet.
func (s *Sink) Queued() int { return int(s.backlog.Load()) }
