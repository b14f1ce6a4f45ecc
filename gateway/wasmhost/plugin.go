package wasmhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Plugin is a configured module with its pool of instances. Streams share
// the instances as Envoy's streams share a VM: a stream is bound to one
// instance for its lifetime but holds it only while one of its callbacks
// runs, so a stream waiting for a slow upstream, or for its client's body,
// keeps no other stream out. A background goroutine delivers ticks, queue
// notifications and HTTP call responses to instances no callback is using.
type Plugin struct {
	r      *Runtime
	mod    *Module
	cfg    PluginConfig
	epoch  time.Time
	stderr *logWriter

	// mu guards all, spawning, closed, changed and every instance's open.
	mu       sync.Mutex
	all      map[*instance]struct{} // live instances
	spawning int                    // instances starting
	closed   bool
	changed  chan struct{} // closed and replaced when an instance starts, fails to start or goes

	stats pluginStats

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	ctx       context.Context // lifetime of the plugin (HTTP calls)
	cancel    context.CancelFunc
}

// NewPlugin configures mod as a plugin and starts its first instance, which
// must accept the VM and plugin configuration (proxy_on_vm_start and
// proxy_on_configure return true). More instances start on demand up to
// PoolSize. Close the plugin when it is replaced.
func (r *Runtime) NewPlugin(ctx context.Context, mod *Module, cfg PluginConfig) (*Plugin, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.CodeSHA256 != "" && cfg.CodeSHA256 != mod.sha256 {
		return nil, fmt.Errorf("wasm plugin %q: module sha256 %s differs from vm_config code sha256 %s: fetch the module the config names", cfg.Name, mod.sha256, cfg.CodeSHA256)
	}
	cfg = cfg.withDefaults()
	p := &Plugin{
		r:       r,
		mod:     mod,
		cfg:     cfg,
		epoch:   time.Now(),
		stderr:  &logWriter{log: cfg.Logger, plugin: cfg.Name},
		all:     map[*instance]struct{}{},
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	// The plugin outlives the call that configures it: it keeps ctx's values,
	// not its cancellation.
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go p.background()
	p.mu.Lock()
	p.spawning++
	p.mu.Unlock()
	if _, err := p.spawn(ctx, false); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Name returns the plugin name.
func (p *Plugin) Name() string { return p.cfg.Name }

// Config returns the plugin configuration with defaults applied.
func (p *Plugin) Config() PluginConfig { return p.cfg }

// Module returns the compiled module the plugin runs.
func (p *Plugin) Module() *Module { return p.mod }

// Close stops the plugin and releases its instances. Streams still open keep
// their instance until they are closed.
func (p *Plugin) Close() {
	p.closeOnce.Do(func() {
		close(p.stop)
		<-p.done
		p.cancel()
		p.mu.Lock()
		p.closed = true
		var idle []*instance
		for in := range p.all {
			if in.open == 0 {
				idle = append(idle, in)
			}
		}
		p.mu.Unlock()
		for _, in := range idle {
			p.discard(in)
		}
	})
}

// spawn starts an instance for a slot the caller reserved (spawning) and
// adds it to the pool; claim binds a stream to it (open = 1) before any
// other stream can see it.
func (p *Plugin) spawn(ctx context.Context, claim bool) (*instance, error) {
	in, err := newInstance(ctx, p)
	p.mu.Lock()
	p.spawning--
	if err == nil {
		p.all[in] = struct{}{}
		if claim {
			in.open = 1
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
	if err != nil {
		p.stats.startFailures.Add(1)
		return nil, &startError{err: err}
	}
	p.stats.instances.Add(1)
	if in.tickPeriod.Load() > 0 {
		// The guest set its tick period while booting, before the
		// background loop could see the instance: wake it now, or the first
		// tick waits for the loop's idle period (CallTimeout/4).
		p.kick()
	}
	return in, nil
}

// startError wraps the failure to start an instance.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// acquire binds a new stream to an instance: the live one with the fewest
// open streams while it has none or the pool is full, else a new one. It
// waits only while every instance of a full pool is still starting.
//
// A dead instance (trapped, timed out) is discarded here, before the pool
// is counted, even while streams are still open on it: they fail at their
// next callback anyway, and a stream that has none coming for a while (a
// fail-open filter's request waiting on a slow upstream) must not keep the
// dead instance's pool slot and memory — with every instance dead that way,
// new streams would wait for those upstreams.
func (p *Plugin) acquire(ctx context.Context) (*instance, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, fmt.Errorf("wasm plugin %q is closed", p.cfg.Name)
		}
		var best *instance
		var dead []*instance
		for in := range p.all {
			if in.dead.Load() {
				dead = append(dead, in)
			} else if best == nil || in.open < best.open {
				best = in
			}
		}
		if dead != nil {
			p.mu.Unlock()
			for _, in := range dead {
				p.discard(in)
			}
			continue
		}
		full := len(p.all)+p.spawning >= p.cfg.PoolSize
		if best != nil && (best.open == 0 || full) {
			best.open++
			p.mu.Unlock()
			return best, nil
		}
		if !full {
			p.spawning++
			p.mu.Unlock()
			return p.spawn(ctx, true)
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.stop:
			return nil, fmt.Errorf("wasm plugin %q is closed", p.cfg.Name)
		case <-ctx.Done():
			return nil, fmt.Errorf("wasm plugin %q: waiting for an instance to start: %w", p.cfg.Name, ctx.Err())
		}
	}
}

// broadcastLocked wakes every acquire waiting for the pool to change; it
// runs with p.mu held.
func (p *Plugin) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// release unbinds a closed stream from its instance. A dead instance is
// discarded (its other streams fail at their next callback); a closed
// plugin's instance goes with its last stream.
func (p *Plugin) release(in *instance) {
	p.mu.Lock()
	in.open--
	last := in.open == 0 && p.closed
	p.mu.Unlock()
	if in.dead.Load() || last {
		p.discard(in)
		return
	}
	if in.hasEvents() {
		p.kick()
	}
}

// discard closes an instance and frees its pool slot; the next acquire
// that needs one starts a fresh one.
func (p *Plugin) discard(in *instance) {
	if !in.discarded.CompareAndSwap(false, true) {
		return
	}
	in.mu.Lock() // a callback of another stream, or the background loop, may still be running
	in.close()
	in.mu.Unlock()
	p.mu.Lock()
	delete(p.all, in)
	p.broadcastLocked()
	p.mu.Unlock()
	p.stats.instances.Add(-1)
	p.stats.replaced.Add(1)
}

func (p *Plugin) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Plugin) instances() []*instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*instance, 0, len(p.all))
	for in := range p.all {
		out = append(out, in)
	}
	return out
}

// background serves idle instances' root contexts: ticks, queue
// notifications, HTTP call responses. (The Runtime's watchdog enforces
// callback deadlines.)
func (p *Plugin) background() {
	defer close(p.done)
	period := p.cfg.CallTimeout / 4
	if period < time.Millisecond {
		period = time.Millisecond
	}
	timer := time.NewTimer(period)
	defer timer.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		case <-timer.C:
		}
		now := int64(time.Since(p.epoch))
		next := now + int64(period)
		for _, in := range p.instances() {
			if !in.hasEvents() && !in.tickDue(now) {
				if t := in.tickPeriod.Load(); t > 0 {
					next = min(next, in.nextTick.Load())
				}
				continue
			}
			if !in.mu.TryLock() {
				continue // a stream holds it and serves it while paused, or at its next callback
			}
			p.serveRoot(in, now)
			dead := in.dead.Load()
			in.mu.Unlock()
			if dead {
				p.discard(in)
				continue
			}
			if in.tickPeriod.Load() > 0 {
				// The tick just served set the next one: sleep until
				// then, not for the loop's idle period.
				next = min(next, in.nextTick.Load())
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(time.Duration(next-int64(time.Since(p.epoch))), 100*time.Microsecond))
	}
}

// serveRoot runs with in.mu held.
func (p *Plugin) serveRoot(in *instance, now int64) {
	if _, err := in.drainEvents(); err != nil {
		return
	}
	if in.tickDue(now) {
		_ = in.tick()
	}
}

// PluginStats are a plugin's counters. Calls counts every callback into
// the guest; Traps and Timeouts the callbacks that failed (each discarded an
// instance); Failures the stream callbacks answered per the fail policy;
// Replaced the discarded instances; Latency the durations of a sample of
// the callbacks: every start-up callback and, after, about one in eight,
// picked at random (timing a callback costs two clock reads, more than a
// native filter's callback itself). Its mean and quantiles estimate all
// callbacks'; its count is not Calls.
type PluginStats struct {
	Calls, Traps, Timeouts, Failures, Replaced, StartFailures uint64
	Instances                                                 int64
	Latency                                                   LatencyHistogram
}

const latencyBuckets = 10

// LatencyBounds returns the upper bounds of the latency histogram buckets;
// the last bucket of LatencyHistogram.Counts is everything slower.
func LatencyBounds() [latencyBuckets]time.Duration {
	return [latencyBuckets]time.Duration{
		time.Microsecond, 2 * time.Microsecond, 5 * time.Microsecond, 10 * time.Microsecond,
		20 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, time.Millisecond,
		10 * time.Millisecond, 100 * time.Millisecond,
	}
}

// LatencyHistogram is a cumulative-free histogram of callback durations:
// Counts[i] counts durations <= LatencyBounds()[i] (and > the previous bound).
type LatencyHistogram struct {
	Counts [latencyBuckets + 1]uint64
	Sum    time.Duration
}

type pluginStats struct {
	calls, traps, timeouts, failures, replaced, startFailures atomic.Uint64
	instances                                                 atomic.Int64
	buckets                                                   [latencyBuckets + 1]atomic.Uint64
	sum                                                       atomic.Int64
}

// observe adds a timed call to the latency histogram (calls counts every
// call, timed or not).
func (s *pluginStats) observe(d time.Duration) {
	s.sum.Add(int64(d))
	bounds := LatencyBounds()
	i := 0
	for i < len(bounds) && d > bounds[i] {
		i++
	}
	s.buckets[i].Add(1)
}

// Stats returns a snapshot of the plugin's counters.
func (p *Plugin) Stats() PluginStats {
	s := &p.stats
	out := PluginStats{
		Calls: s.calls.Load(), Traps: s.traps.Load(), Timeouts: s.timeouts.Load(),
		Failures: s.failures.Load(), Replaced: s.replaced.Load(), StartFailures: s.startFailures.Load(),
		Instances: s.instances.Load(),
	}
	for i := range s.buckets {
		out.Latency.Counts[i] = s.buckets[i].Load()
	}
	out.Latency.Sum = time.Duration(s.sum.Load())
	return out
}

var _ io.Writer = (*logWriter)(nil)

// logWriter turns guest stdout/stderr (WASI fd_write, e.g. a Go panic) into
// log lines.
type logWriter struct {
	log    *slog.Logger
	plugin string
}

// Write implements io.Writer, one log record per line.
func (w *logWriter) Write(b []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		w.log.Info(string(line), "plugin", w.plugin, "source", "wasi")
	}
	return len(b), nil
}
