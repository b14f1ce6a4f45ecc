package wal

// MinExported combines the cursors of several exporters for
// [Options.ExportedSeq]: it reports the lowest of them, so retention keeps
// every segment some exporter has not delivered yet. Nil functions are
// skipped; with none left it returns nil (no exporter: retention is bounded
// only by checkpoints).
func MinExported(cursors ...func() uint64) func() uint64 {
	var fs []func() uint64
	for _, f := range cursors {
		if f != nil {
			fs = append(fs, f)
		}
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func() uint64 {
		m := fs[0]()
		for _, f := range fs[1:] {
			m = min(m, f())
		}
		return m
	}
}
