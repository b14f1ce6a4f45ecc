package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwarden/meshwarden/internal/lifecycle"
	"github.com/meshwarden/meshwarden/ir"
)

// Options configure a [Manager].
type Options struct {
	// Issuer signs the certificates. Required.
	Issuer Issuer
	// Policy sets the renewal margin (RenewBefore; zero means 1/3 of each
	// certificate's life). LeafTTL is applied by the issuer's own
	// configuration (Consul's CA LeafCertTTL, FileCAOptions.LeafTTL, the
	// ACME profile).
	Policy ir.CertPolicy
	// Logger receives renewals, failures and alarms (never keys); nil
	// discards them.
	Logger *slog.Logger
	// Registerer, if set, gets the manager's metrics.
	Registerer prometheus.Registerer
	// Dir, if set, receives <name>.pem, <name>-key.pem and roots.pem on
	// every change, all mode 0600.
	Dir string
	// RetryInterval is the first wait after a failed renewal; it doubles
	// up to MaxRetryInterval. Zero means 2s and 2m.
	RetryInterval, MaxRetryInterval time.Duration
	// AlarmAfterFailures raises the alarm once this many renewals in a row
	// failed inside the renewal window; zero means 3.
	AlarmAfterFailures int
	// RootGrace keeps a root that the issuer stopped listing in the trust
	// bundle this long (or until it expires), so that peers still holding
	// leaves signed by it keep verifying. Zero means 1h.
	RootGrace time.Duration
	// MinRefresh spaces two calls to the issuer for one name; zero means
	// 1s. It bounds the load of issuers whose blocking queries return at
	// once (Consul with leaves shorter than 10 minutes).
	MinRefresh time.Duration
	// RootsPoll is how often roots are re-read from issuers that cannot
	// block; zero means 1m.
	RootsPoll time.Duration
}

// Manager keeps certificates fresh and serves them. Create it with
// [NewManager], start it with [Manager.Run], add names with [Manager.Track].
type Manager struct {
	opts Options
	log  *slog.Logger

	changed chan struct{}

	// policy is the current ir.CertPolicy; wake is closed (and replaced)
	// when it changes, so pull loops recompute their renewal time.
	policyMu sync.Mutex
	policy   ir.CertPolicy
	wake     chan struct{}

	mu      sync.RWMutex
	runCtx  context.Context
	wg      sync.WaitGroup
	leaves  map[string]*entry
	roots   []*rootEntry
	pool    *x509.CertPool
	rootsOK chan struct{}
}

type entry struct {
	name       string
	cert       *Certificate
	failures   int // consecutive
	failTotal  uint64
	renewals   uint64
	lastErr    error
	alarmed    bool
	started    bool
	firstReady chan struct{}
}

type rootEntry struct {
	cert      *x509.Certificate
	removedAt time.Time
}

// NewManager checks opts and returns a manager that is not yet running.
func NewManager(opts Options) (*Manager, error) {
	if opts.Issuer == nil {
		return nil, errors.New("certs: no issuer: set Options.Issuer (consul, acme or file)")
	}
	if opts.Policy.RenewBefore < 0 {
		return nil, fmt.Errorf("certs: renewBefore %s is negative: give a positive duration or zero for 1/3 of the lifetime", opts.Policy.RenewBefore)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 2 * time.Second
	}
	if opts.MaxRetryInterval <= 0 {
		opts.MaxRetryInterval = 2 * time.Minute
	}
	if opts.AlarmAfterFailures <= 0 {
		opts.AlarmAfterFailures = 3
	}
	if opts.RootGrace <= 0 {
		opts.RootGrace = time.Hour
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = time.Second
	}
	if opts.RootsPoll <= 0 {
		opts.RootsPoll = time.Minute
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("certs: create dir: %w", err)
		}
	}
	m := &Manager{
		opts:    opts,
		log:     opts.Logger.With("component", "certs", "issuer", opts.Issuer.Kind()),
		changed: make(chan struct{}, 1),
		leaves:  map[string]*entry{},
		pool:    x509.NewCertPool(),
		rootsOK: make(chan struct{}),
		policy:  opts.Policy,
		wake:    make(chan struct{}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("certs: register metrics: %w", err)
		}
	}
	return m, nil
}

// Run starts the roots loop and every tracked name's renewal loop, and
// blocks until ctx ends and every loop has stopped.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("certs: Run called twice")
	}
	m.runCtx = ctx
	m.wg.Add(1)
	go m.rootsLoop(ctx)
	for _, e := range m.leaves {
		m.startLocked(e)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
	return nil
}

// Track adds names to the managed set (idempotent). Their certificates are
// issued once Run has started.
func (m *Manager) Track(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		if _, ok := m.leaves[n]; ok {
			continue
		}
		e := &entry{name: n, firstReady: make(chan struct{})}
		m.leaves[n] = e
		if m.runCtx != nil {
			m.startLocked(e)
		}
	}
}

func (m *Manager) startLocked(e *entry) {
	if e.started {
		return
	}
	e.started = true
	m.wg.Add(1)
	go m.leafLoop(m.runCtx, e)
}

// Changed fires (edge-triggered, buffered one) whenever a certificate or
// the trust bundle changed. It is the push side of the SDS SecretSource.
func (m *Manager) Changed() <-chan struct{} { return m.changed }

func (m *Manager) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Wait blocks until name (tracked) has a certificate and the trust bundle
// has been read once, or ctx ends.
func (m *Manager) Wait(ctx context.Context, name string) (*Certificate, error) {
	m.Track(name)
	m.mu.RLock()
	e := m.leaves[name]
	m.mu.RUnlock()
	for _, ch := range []chan struct{}{e.firstReady, m.rootsOK} {
		select {
		case <-ch:
		case <-ctx.Done():
			m.mu.RLock()
			err := e.lastErr
			m.mu.RUnlock()
			return nil, fmt.Errorf("certs: waiting for %s: %w (last error: %v)", name, ctx.Err(), err)
		}
	}
	return m.Certificate(name), nil
}

// Certificate returns name's current certificate, or nil.
func (m *Manager) Certificate(name string) *Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e := m.leaves[name]; e != nil {
		return e.cert
	}
	return nil
}

// Roots returns the trust bundle: the issuer's current roots and, for
// RootGrace after a rotation, the roots it replaced.
func (m *Manager) Roots() []*x509.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*x509.Certificate, len(m.roots))
	for i, r := range m.roots {
		out[i] = r.cert
	}
	return out
}

// Pool returns the trust bundle as a pool (do not modify it).
func (m *Manager) Pool() *x509.CertPool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pool
}

// SetPolicy replaces the certificate policy (on a policy apply). A new
// RenewBefore takes effect at once; LeafTTL is the issuer's to apply (see
// ConsulIssuer.SetLeafTTL).
func (m *Manager) SetPolicy(p ir.CertPolicy) error {
	if p.RenewBefore < 0 {
		return fmt.Errorf("certs: renewBefore %s is negative: give a positive duration or zero for 1/3 of the lifetime", p.RenewBefore)
	}
	m.policyMu.Lock()
	m.policy = p
	close(m.wake)
	m.wake = make(chan struct{})
	m.policyMu.Unlock()
	return nil
}

func (m *Manager) currentPolicy() (ir.CertPolicy, <-chan struct{}) {
	m.policyMu.Lock()
	defer m.policyMu.Unlock()
	return m.policy, m.wake
}

// renewBefore is the renewal margin for c.
func (m *Manager) renewBefore(c *Certificate) time.Duration {
	life := c.Lifetime()
	p, _ := m.currentPolicy()
	rb := p.RenewBefore
	if rb <= 0 || rb >= life {
		rb = life / 3
	}
	return rb
}

// RenewAt returns when the manager renews c (pull issuers) or expects the
// issuer to have renewed it.
func (m *Manager) RenewAt(c *Certificate) time.Time { return c.NotAfter().Add(-m.renewBefore(c)) }

func (m *Manager) leafLoop(ctx context.Context, e *entry) {
	defer m.wg.Done()
	w, watching := m.opts.Issuer.(Watcher)
	backoff := m.opts.RetryInterval
	var cur *Certificate
	for ctx.Err() == nil {
		var (
			c   *Certificate
			err error
		)
		if watching {
			c, err = w.WatchLeaf(ctx, e.name, cur)
		} else {
			if cur != nil && !m.sleepUntilRenewal(ctx, cur) {
				return
			}
			c, err = m.opts.Issuer.Issue(ctx, e.name)
		}
		if err == nil && c != cur {
			err = m.install(ctx, e, c)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.fail(e, err)
			if !lifecycle.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, m.opts.MaxRetryInterval)
			continue
		}
		backoff = m.opts.RetryInterval
		cur = c
		m.evaluate(e)
		if !lifecycle.Sleep(ctx, m.opts.MinRefresh) {
			return
		}
	}
}

// sleepUntilRenewal waits until cur is due, recomputing the time when the
// policy changes; it reports whether ctx is still alive.
func (m *Manager) sleepUntilRenewal(ctx context.Context, cur *Certificate) bool {
	for {
		_, wake := m.currentPolicy()
		d := time.Until(m.RenewAt(cur))
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			t.Stop()
			return false
		case <-wake:
			t.Stop()
		}
	}
}

// install swaps in c after checking it chains to the trust bundle. A leaf
// signed by a root the manager has not seen yet triggers a roots refresh
// first: the bundle always holds a new root before a leaf signed by it is
// served.
func (m *Manager) install(ctx context.Context, e *entry, c *Certificate) error {
	if err := c.Verify(m.Pool(), time.Now()); err != nil {
		roots, rerr := m.opts.Issuer.Roots(ctx)
		if rerr != nil {
			return fmt.Errorf("new certificate for %s does not chain to the trust bundle and the roots could not be refreshed: %w", e.name, rerr)
		}
		// An issuer without private roots (public ACME) is verified by
		// its clients' own roots.
		if len(roots) > 0 {
			m.setRoots(roots)
			if err := c.Verify(m.Pool(), time.Now()); err != nil {
				return fmt.Errorf("new certificate for %s (serial %s) does not chain to the trust bundle; keeping the current one: %w", e.name, c.Serial(), err)
			}
		}
	}
	if err := m.writeLeaf(c); err != nil {
		m.log.Error("write certificate files", "name", e.name, "err", err)
	}
	m.mu.Lock()
	prev := e.cert
	e.cert = c
	e.failures, e.lastErr = 0, nil
	if prev != nil {
		e.renewals++
	}
	m.mu.Unlock()
	if prev == nil {
		close(e.firstReady)
		m.log.Info("certificate issued", "name", e.name, "serial", c.Serial(), "spiffe", c.SPIFFEID, "not_after", c.NotAfter())
	} else {
		m.log.Info("certificate renewed", "name", e.name, "serial", c.Serial(), "previous_serial", prev.Serial(), "not_after", c.NotAfter())
	}
	m.notify()
	return nil
}

func (m *Manager) fail(e *entry, err error) {
	m.mu.Lock()
	e.failures++
	e.failTotal++
	e.lastErr = err
	n := e.failures
	m.mu.Unlock()
	m.log.Warn("certificate renewal failed", "name", e.name, "consecutive_failures", n, "err", err)
	m.evaluate(e)
}

// evaluate raises or clears e's alarm and logs loudly on every evaluation
// while it is raised.
func (m *Manager) evaluate(e *entry) {
	m.mu.Lock()
	reason := m.alarmLocked(e, time.Now())
	was := e.alarmed
	e.alarmed = reason != ""
	m.mu.Unlock()
	switch {
	case reason != "":
		m.log.Error("CERTIFICATE ALARM: renewal is failing and expiry is near; act now", "name", e.name, "reason", reason)
	case was:
		m.log.Info("certificate alarm cleared", "name", e.name)
	}
}

// alarmLocked returns why e is in alarm at now, or "".
func (m *Manager) alarmLocked(e *entry, now time.Time) string {
	c := e.cert
	if c == nil {
		if e.failures >= m.opts.AlarmAfterFailures {
			return fmt.Sprintf("no certificate yet after %d failed attempts: %v", e.failures, e.lastErr)
		}
		return ""
	}
	left := c.NotAfter().Sub(now)
	rb := m.renewBefore(c)
	switch {
	case left <= 0:
		return fmt.Sprintf("certificate serial %s expired at %s", c.Serial(), c.NotAfter().UTC().Format(time.RFC3339))
	case left < rb/4:
		return fmt.Sprintf("certificate serial %s expires in %s and has not been renewed (renewal was due %s before expiry)", c.Serial(), left.Round(time.Second), rb)
	case e.failures >= m.opts.AlarmAfterFailures && left < rb:
		return fmt.Sprintf("%d renewals in a row failed, certificate serial %s expires in %s: %v", e.failures, c.Serial(), left.Round(time.Second), e.lastErr)
	}
	return ""
}

// Ready returns nil when every tracked certificate is present and out of
// alarm, else an error naming each problem. Wire it to the readiness probe.
func (m *Manager) Ready() error {
	now := time.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var errs []error
	names := slices.Sorted(maps.Keys(m.leaves))
	for _, n := range names {
		e := m.leaves[n]
		if r := m.alarmLocked(e, now); r != "" {
			errs = append(errs, fmt.Errorf("certificate %s: %s", n, r))
		} else if e.cert == nil {
			errs = append(errs, fmt.Errorf("certificate %s: not issued yet", n))
		}
	}
	for _, r := range m.roots {
		if r.removedAt.IsZero() && r.cert.NotAfter.Before(now) {
			errs = append(errs, fmt.Errorf("root %s expired at %s", r.cert.Subject.CommonName, r.cert.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) rootsLoop(ctx context.Context) {
	defer m.wg.Done()
	w, watching := m.opts.Issuer.(Watcher)
	var idx uint64
	backoff := m.opts.RetryInterval
	for ctx.Err() == nil {
		var (
			roots []*x509.Certificate
			err   error
			next  = m.opts.RootsPoll
		)
		if watching {
			roots, idx, err = w.WatchRoots(ctx, idx)
			next = m.opts.MinRefresh
		} else {
			roots, err = m.opts.Issuer.Roots(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("reading trust roots failed", "err", err)
			if !lifecycle.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, m.opts.MaxRetryInterval)
			continue
		}
		backoff = m.opts.RetryInterval
		m.setRoots(roots)
		if !lifecycle.Sleep(ctx, next) {
			return
		}
	}
}

// setRoots merges the issuer's current roots into the bundle: new ones are
// added, vanished ones stay for RootGrace (or until they expire).
func (m *Manager) setRoots(current []*x509.Certificate) {
	now := time.Now()
	m.mu.Lock()
	cur := map[string]bool{}
	for _, c := range current {
		cur[string(c.Raw)] = true
	}
	changed := false
	var kept []*rootEntry
	seen := map[string]bool{}
	for _, r := range m.roots {
		k := string(r.cert.Raw)
		seen[k] = true
		switch {
		case cur[k]:
			if !r.removedAt.IsZero() {
				r.removedAt = time.Time{}
			}
		case r.removedAt.IsZero():
			r.removedAt = now
			m.log.Info("root left the issuer's list; kept in the trust bundle for the grace period", "root", r.cert.Subject.CommonName, "grace", m.opts.RootGrace)
		}
		if !r.removedAt.IsZero() && (now.Sub(r.removedAt) > m.opts.RootGrace || r.cert.NotAfter.Before(now)) {
			changed = true
			m.log.Info("root dropped from the trust bundle", "root", r.cert.Subject.CommonName)
			continue
		}
		kept = append(kept, r)
	}
	for _, c := range current {
		if !seen[string(c.Raw)] {
			kept = append(kept, &rootEntry{cert: c})
			changed = true
			m.log.Info("root added to the trust bundle", "root", c.Subject.CommonName, "not_after", c.NotAfter)
		}
	}
	if changed {
		m.roots = kept
		pool := x509.NewCertPool()
		for _, r := range kept {
			pool.AddCert(r.cert)
		}
		m.pool = pool
	}
	first := false
	select {
	case <-m.rootsOK:
	default:
		close(m.rootsOK)
		first = true
	}
	m.mu.Unlock()
	if changed || first {
		if err := m.writeFile("roots.pem", EncodePEM(m.Roots())); err != nil {
			m.log.Error("write roots file", "err", err)
		}
		m.notify()
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func (m *Manager) writeLeaf(c *Certificate) error {
	base := unsafeName.ReplaceAllString(c.Name, "_")
	if err := m.writeFile(base+".pem", c.ChainPEM); err != nil {
		return err
	}
	return m.writeFile(base+"-key.pem", c.Key)
}

// writeFile atomically writes data to Dir/name with mode 0600.
func (m *Manager) writeFile(name string, data []byte) error {
	if m.opts.Dir == "" {
		return nil
	}
	f, err := os.CreateTemp(m.opts.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(m.opts.Dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// ReadyHandler serves the readiness check: 200 "ok", or 503 with one line
// per problem (names, serials and times; never keys).
func (m *Manager) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, err)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
}
