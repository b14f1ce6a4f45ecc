// Package dye is Meshwarden's header-dyeing (traffic colouring) filter. It
// gives every request a lane (internal/dyeing.Header, mirrored into the W3C
// baggage member internal/dyeing.BaggageKey) chosen by first-match-wins rules,
// sticky percentage splits and a default lane; it strips dyes that arrive from
// untrusted peers, scopes lanes to tenants, and in egress mode restores the
// lane header from baggage.
//
// Its configuration is the pure package filters/dye/dyeconfig; this package
// is the engine (plain Go, tested natively) and the proxy-wasm plugin.
package dye

import (
	"net/netip"
	"strings"

	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
	"github.com/meshwarden/meshwarden/filters/kit"

	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/internal/tracectx"
)

// Request is the view of one request's headers the engine needs. Header
// names are lowercase; pseudo-headers (":path", ":method") are included.
type Request interface {
	Header(name string) (string, bool)
	SetHeader(name, value string)
	RemoveHeader(name string)
}

// Peer is the caller as the proxy sees it.
type Peer struct {
	// Identity is the peer's SPIFFE id from its mTLS certificate, or "".
	Identity string
	// Address is the peer's source address ("ip:port" or "ip"), or "".
	Address string
	// LoadAddress, when set and Address is "", supplies the address the
	// first time the engine needs it: a peer trusted by its identity never
	// needs it, so the filter skips that hostcall.
	LoadAddress func() string
}

// Decision is what the engine did to a request.
type Decision struct {
	// Lane set on the request ("" when left undyed).
	Lane string
	// Tenant of the request ("" when unknown).
	Tenant string
	// By says what chose the lane: "header", "baggage" (kept from a trusted
	// peer or the local application), "rule:<name or index>", "default" or "".
	By string
	// Stripped is true when a dye from an untrusted peer was removed.
	Stripped bool
	// Trusted reports whether the peer was trusted.
	Trusted bool
}

// Engine applies a validated dyeconfig.Config to requests. It is immutable
// and safe to share.
type Engine struct {
	cfg        *dyeconfig.Config
	cidrs      []netip.Prefix
	laneScopes []laneScope // few: a scan beats a map lookup in the guest
	ruleBy     []string    // "rule:<name or index>", precomputed
}

// NewEngine compiles cfg, which must have passed Validate.
func NewEngine(cfg *dyeconfig.Config) *Engine {
	e := &Engine{cfg: cfg}
	for _, s := range cfg.Trust.SourceCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			e.cidrs = append(e.cidrs, p.Masked())
		}
	}
	for _, ls := range cfg.Lanes {
		e.laneScopes = setScope(e.laneScopes, ls.Lane, ls.Tenants)
	}
	for i, r := range cfg.Rules {
		name := r.Name
		if name == "" {
			name = itoa(i)
		}
		e.ruleBy = append(e.ruleBy, "rule:"+name)
	}
	return e
}

// Config returns the engine's configuration.
func (e *Engine) Config() *dyeconfig.Config { return e.cfg }

// NeedsPeer reports which peer facts the configuration uses, so the filter
// reads only those from the host.
func (e *Engine) NeedsPeer() (identity, address bool) {
	if e.cfg.Mode == dyeconfig.ModeEgress {
		identity = len(e.cfg.Tenant.Identities) > 0
	} else {
		identity = len(e.cfg.Trust.PeerIdentities) > 0 || len(e.cfg.Tenant.Identities) > 0
	}
	for i := range e.cfg.Rules {
		identity = identity || len(e.cfg.Rules[i].Match.PeerIdentities) > 0
	}
	return identity, e.cfg.Mode != dyeconfig.ModeEgress && len(e.cidrs) > 0
}

// Apply decides the request's lane and tenant and writes them to its
// headers: the lane header and the baggage member (or their removal) and the
// tenant header and baggage member. rnd returns a uniform value in [0, 100)
// for splits without a sticky key.
func (e *Engine) Apply(req Request, peer Peer, rnd func() uint32) Decision {
	var d Decision
	d.Trusted = e.cfg.Mode == dyeconfig.ModeEgress || e.trusted(peer)
	bagHeader, _ := req.Header(tracectx.BaggageHeader)
	// The two members this filter reads, in one pass over the header.
	var bagTenant, bv string
	var hadBagTenant, hasBaggage bool
	if bagHeader != "" {
		bagTenant, hadBagTenant, bv, hasBaggage = tracectx.BaggageValue2(bagHeader, dyeing.BaggageTenantKey, dyeing.BaggageKey)
	}

	// Tenant: identity mapping first, then the header when allowed, then
	// (from trusted peers) baggage.
	if t, ok := e.tenantOf(peer.Identity); ok {
		d.Tenant = t
	} else if v, ok := req.Header(e.cfg.Tenant.Header); ok && (d.Trusted || e.cfg.Tenant.TrustHeader) && dyeconfig.CheckTenant(v) == nil {
		d.Tenant = v
	} else if d.Trusted && bagHeader != "" {
		if hadBagTenant && dyeconfig.CheckTenant(bagTenant) == nil {
			d.Tenant = bagTenant
		}
	}

	// A carried dye counts only from a trusted peer.
	hv, hasHeader := req.Header(dyeing.Header)
	if d.Trusted {
		switch {
		case hasHeader && dyeing.ValidLane(hv) && e.allowed(hv, d.Tenant):
			d.Lane, d.By = hv, "header"
		case hasBaggage && dyeing.ValidLane(bv) && e.allowed(bv, d.Tenant):
			d.Lane, d.By = bv, "baggage"
		}
	} else if hasHeader || hasBaggage {
		d.Stripped = true
	}

	if d.Lane == "" {
		d.Lane, d.By = e.decide(req, peer, d.Tenant, rnd)
	}

	e.write(req, d, bagHeader, hasBaggage, bv, hadBagTenant, bagTenant)
	return d
}

// decide runs the rules, then the default lane.
func (e *Engine) decide(req Request, peer Peer, tenant string, rnd func() uint32) (string, string) {
	var rl reqLine
	for i := range e.cfg.Rules {
		r := &e.cfg.Rules[i]
		if len(r.Tenants) > 0 && !contains(r.Tenants, tenant) {
			continue
		}
		if !e.match(&r.Match, req, &rl, peer) {
			continue
		}
		lane := r.Lane
		if len(r.Split) > 0 {
			lane = e.pick(r, req, rnd)
			if lane == "" {
				lane = e.cfg.DefaultLane
			}
		}
		if lane != "" && !e.allowed(lane, tenant) {
			continue
		}
		return lane, e.ruleBy[i]
	}
	if l := e.cfg.DefaultLane; l != "" && e.allowed(l, tenant) {
		return l, "default"
	}
	return "", ""
}

// pick chooses a split arm: by a stable FNV-1a hash of the sticky key, or
// by rnd when there is none.
func (e *Engine) pick(r *dyeconfig.Rule, req Request, rnd func() uint32) string {
	var bucket uint32
	key, ok := "", false
	if k := r.StickyKey; k != nil {
		if k.Header != "" {
			key, ok = req.Header(k.Header)
		} else {
			key, ok = cookie(req, k.Cookie)
		}
	}
	if ok && key != "" {
		bucket = StickyBucket(r.Name, key)
	} else if rnd != nil {
		bucket = rnd() % 100
	}
	var acc uint32
	for _, s := range r.Split {
		acc += s.Weight
		if bucket < acc {
			return s.Lane
		}
	}
	return ""
}

// StickyBucket returns the split bucket, 0 to 99, of a sticky key for a
// rule: FNV-1a (32-bit) of "<rule name>\x00<key>". It is stable across
// proxies, restarts and builds, so one user stays in one lane everywhere.
func StickyBucket(rule, key string) uint32 {
	// FNV-1a inline (hash/fnv's would allocate the hasher and copies).
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for i := 0; i < len(rule); i++ {
		h = (h ^ uint32(rule[i])) * prime32
	}
	h *= prime32 // the 0 separator: h ^ 0 == h
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * prime32
	}
	return h % 100
}

// reqLine is the method, path and query of the request decide is matching,
// each read from the request at most once for all the rules.
type reqLine struct {
	method, path, query    string
	methodRead, pathParsed bool
}

func (l *reqLine) getMethod(req Request) string {
	if !l.methodRead {
		l.method, _ = req.Header(":method")
		l.methodRead = true
	}
	return l.method
}

func (l *reqLine) parsePath(req Request) {
	if !l.pathParsed {
		path, _ := req.Header(":path")
		l.path, l.query = path, ""
		if q := strings.IndexByte(path, '?'); q >= 0 {
			l.path, l.query = path[:q], path[q+1:]
		}
		l.pathParsed = true
	}
}

func (e *Engine) match(m *dyeconfig.Match, req Request, rl *reqLine, peer Peer) bool {
	if len(m.Methods) > 0 && !contains(m.Methods, rl.getMethod(req)) {
		return false
	}
	rl.parsePath(req)
	p, query := rl.path, rl.query
	if m.PathPrefix != "" && !strings.HasPrefix(p, m.PathPrefix) {
		return false
	}
	for _, vm := range m.Headers {
		v, ok := req.Header(vm.Name)
		if !valueMatches(&vm, v, ok) {
			return false
		}
	}
	for _, vm := range m.Cookies {
		v, ok := cookie(req, vm.Name)
		if !valueMatches(&vm, v, ok) {
			return false
		}
	}
	for _, vm := range m.QueryParams {
		v, ok := queryParam(query, vm.Name)
		if !valueMatches(&vm, v, ok) {
			return false
		}
	}
	if len(m.PeerIdentities) > 0 && !identityIn(m.PeerIdentities, peer.Identity) {
		return false
	}
	return true
}

func valueMatches(vm *dyeconfig.ValueMatch, v string, ok bool) bool {
	switch {
	case !ok:
		return false
	case vm.Exact != "":
		return v == vm.Exact
	case vm.Prefix != "":
		return strings.HasPrefix(v, vm.Prefix)
	}
	return true
}

// write puts the decision on the request.
func (e *Engine) write(req Request, d Decision, bagHeader string, hadBaggageDye bool, bagDye string, hadBagTenant bool, bagTenant string) {
	if d.Lane != "" {
		req.SetHeader(dyeing.Header, d.Lane)
	} else {
		req.RemoveHeader(dyeing.Header)
	}
	if d.Tenant != "" {
		req.SetHeader(e.cfg.Tenant.Header, d.Tenant)
	} else {
		req.RemoveHeader(e.cfg.Tenant.Header)
	}
	wantDye := d.Lane != "" && !e.cfg.DisableBaggage
	wantTenant := d.Tenant != "" && !e.cfg.DisableBaggage
	// Leave baggage untouched when it already says what we would write.
	if hadBaggageDye == wantDye && (!wantDye || bagDye == d.Lane) &&
		hadBagTenant == wantTenant && (!wantTenant || bagTenant == d.Tenant) {
		return
	}
	// The common case in one pass: a clean header, one string built.
	var buf [256]byte
	edits := [2]tracectx.BaggageEdit{
		{Key: dyeing.BaggageTenantKey, Value: d.Tenant, Set: wantTenant},
		{Key: dyeing.BaggageKey, Value: d.Lane, Set: wantDye},
	}
	if out, ok := tracectx.AppendEditedBaggage(buf[:0], bagHeader, edits[:]...); ok {
		if len(out) == 0 {
			req.RemoveHeader(tracectx.BaggageHeader)
		} else {
			kit.SetHeaderBytes(req, tracectx.BaggageHeader, out)
		}
		return
	}
	bg := tracectx.ParseBaggage(bagHeader)
	if wantTenant {
		bg.Set(dyeing.BaggageTenantKey, d.Tenant)
	} else {
		bg.Delete(dyeing.BaggageTenantKey)
	}
	if wantDye {
		bg.Set(dyeing.BaggageKey, d.Lane)
	} else {
		bg.Delete(dyeing.BaggageKey)
	}
	if bg.Len() == 0 {
		req.RemoveHeader(tracectx.BaggageHeader)
		return
	}
	req.SetHeader(tracectx.BaggageHeader, bg.String())
}

func (e *Engine) trusted(p Peer) bool {
	if p.Identity != "" && identityIn(e.cfg.Trust.PeerIdentities, p.Identity) {
		return true
	}
	if len(e.cidrs) == 0 {
		return false
	}
	a := p.Address
	if a == "" && p.LoadAddress != nil {
		a = p.LoadAddress()
	}
	if a == "" {
		return false
	}
	addr, err := netip.ParseAddrPort(a)
	var ip netip.Addr
	if err == nil {
		ip = addr.Addr()
	} else if ip, err = netip.ParseAddr(a); err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, c := range e.cidrs {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

func (e *Engine) tenantOf(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	for _, ti := range e.cfg.Tenant.Identities {
		if identityMatch(ti.Peer, id) {
			return ti.Tenant, true
		}
	}
	return "", false
}

// allowed reports whether tenant may use lane.
func (e *Engine) allowed(lane, tenant string) bool {
	for i := range e.laneScopes {
		if e.laneScopes[i].lane == lane {
			return contains(e.laneScopes[i].tenants, tenant)
		}
	}
	return true
}

// laneScope is the tenants a lane is restricted to.
type laneScope struct {
	lane    string
	tenants []string
}

// setScope sets lane's tenants, replacing an earlier entry (as a map would).
func setScope(s []laneScope, lane string, tenants []string) []laneScope {
	for i := range s {
		if s[i].lane == lane {
			s[i].tenants = tenants
			return s
		}
	}
	return append(s, laneScope{lane: lane, tenants: tenants})
}

func identityIn(list []string, id string) bool {
	for _, p := range list {
		if identityMatch(p, id) {
			return true
		}
	}
	return false
}

// identityMatch matches a SPIFFE id against an exact id or a "/*" prefix.
func identityMatch(pattern, id string) bool {
	if id == "" {
		return false
	}
	if strings.HasSuffix(pattern, "/*") {
		return strings.HasPrefix(id, pattern[:len(pattern)-1])
	}
	return pattern == id
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// cookie returns the value of the named cookie.
func cookie(req Request, name string) (string, bool) {
	h, ok := req.Header("cookie")
	if !ok {
		return "", false
	}
	for h != "" {
		var c string
		c, h, _ = strings.Cut(h, ";")
		k, v, _ := strings.Cut(strings.TrimSpace(c), "=")
		if k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// queryParam returns the raw value of the first parameter name.
func queryParam(query, name string) (string, bool) {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
