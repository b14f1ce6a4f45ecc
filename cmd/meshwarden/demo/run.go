package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/testenv/otlpsink"
)

// Options configure [Run].
type Options struct {
	Stack StackOptions
	// Out receives the demo's story.
	Out io.Writer
	// Stay keeps everything running after the story, until ctx ends.
	Stay bool
	// Users is how many distinct users the sticky split is shown with.
	Users int
}

// Summary is what the demo measured; the e2e suite asserts it.
type Summary struct {
	OptIn Split // x-canary: true
	// UpstreamDye and UpstreamBaggage are what payments received for one
	// opted-in request sent with baggage app=shop: the lane must ride in
	// both, so the next hop can route by it.
	UpstreamDye, UpstreamBaggage string
	Users                        Split // first pass, one request per user
	UsersAgain                   Split // second pass, same users
	StickyMismatch               int   // users whose lane changed between passes
	Spoofed                      Split // default-lane users claiming x-mw-dye: canary
	SpoofUsers                   int
	Transfers                    int // POST /v1/transfers answered 200
	AuditRecords                 int // records in the collector's WAL after the run
	VerifyOutput                 string
	VerifyOK                     bool
	TraceID                      string
	TraceSpans                   []otlpsink.Span
	// Trust is what an attacker got from the plane (nil with an insecure plane).
	Trust *Trust
	// Access is the access step (with MTLS only): nil without mTLS.
	Access *AccessResult
	// Rollout is the progressive-delivery step (with Prometheus only).
	Rollout *RolloutResult
	// FilterRuntimes is how the gateway runs each filter, from its
	// /config_dump: "native" (the official build of a built-in filter, its
	// Go code linked into the gateway) or "wasm" (wazero).
	FilterRuntimes map[string]string
}

// Run brings the stack up, tells its story and (unless Stay) stops it.
func Run(ctx context.Context, o Options) (*Summary, error) {
	out := o.Out
	if o.Users == 0 {
		o.Users = 200
	}
	o.Stack.Progress = out
	fmt.Fprintln(out, "== Meshwarden demo: bringing the stack up")
	st := NewStack(o.Stack)
	start := time.Now()
	if err := st.Start(ctx); err != nil {
		return nil, err
	}
	defer st.Stop()
	fmt.Fprintf(out, "  all up in %s\n\n", time.Since(start).Round(time.Millisecond))

	sum, err := Story(ctx, st, o.Users, out)
	if err != nil {
		return sum, err
	}
	if o.Stay {
		fmt.Fprintf(out, "\n== Staying up (Ctrl-C stops every process the demo started)\n")
		fmt.Fprintf(out, "  try: curl -s -H 'Host: payments' -H 'x-canary: true' http://%s/hello\n", st.GatewayAddr)
		fmt.Fprintf(out, "  gateway admin  http://%s/config_dump  /metrics  /healthz/ready\n", st.GatewayAdmin)
		if tok, err := st.GatewayAdminTokenFile(); err == nil {
			fmt.Fprintf(out, "    profiles:     meshwarden profile heap --gateway http://%s --admin-token-file %s -o heap.pb.gz\n", st.GatewayAdmin, tok)
		}
		fmt.Fprintf(out, "  plane admin    https://%s/v1/status  /v1/nodes  /metrics  (Consul ACL token required)\n", st.PlaneAdmin)
		fmt.Fprintf(out, "    as an operator: meshwarden version %s\n", strings.Join(st.PlaneFlags(), " "))
		fmt.Fprintf(out, "                    meshwarden policy status %s\n", strings.Join(st.PlaneFlags(), " "))
		fmt.Fprintf(out, "                    meshwarden health %s   # subset health scores\n", strings.Join(st.PlaneFlags(), " "))
		// The plane's certificate names it only by SPIFFE id, which curl
		// cannot check (meshwarden's clients do): -k only to show the 401.
		fmt.Fprintf(out, "    anonymous:      curl -sk -o /dev/null -w '%%{http_code}\\n' https://%s/v1/status   # 401 (-k: curl cannot check a SPIFFE id)\n", st.PlaneAdmin)
		fmt.Fprintf(out, "  consul         http://%s/v1/catalog/services\n", st.Consul.Addr())
		fmt.Fprintf(out, "  audit          meshwarden audit tail --dir %s\n", st.AuditDir)
		fmt.Fprintf(out, "  traces         meshwarden trace list --sink http://%s\n", st.OTLPAddr)
		fmt.Fprintf(out, "                 meshwarden trace show %s --sink http://%s\n", sum.TraceID, st.OTLPAddr)
		<-ctx.Done()
		fmt.Fprintln(out, "\n== Stopping")
	}
	return sum, nil
}

// FilterRuntimes reads the gateway's /config_dump at admin (host:port) and
// returns each running filter's runtime (native or wasm) by name.
func FilterRuntimes(ctx context.Context, admin string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/config_dump", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway config dump: %w", err)
	}
	defer resp.Body.Close()
	var d struct {
		Filters []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Runtime string `json:"runtime"`
		} `json:"filters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("gateway config dump: %w", err)
	}
	out := map[string]string{}
	for _, f := range d.Filters {
		if f.Runtime != "" {
			out[f.Name] = f.Runtime
		}
	}
	return out, nil
}

// ClientSpanID is the parent span id the demo's traced request carries, as
// if a caller had started the trace.
const ClientSpanID = "00f067aa0ba902b7"

// Story sends the demo's traffic through a running stack and prints what
// happened. It returns the measured summary.
func Story(ctx context.Context, st *Stack, users int, out io.Writer) (*Summary, error) {
	c := st.NewClient()
	sum := &Summary{}

	if rts, err := FilterRuntimes(ctx, st.GatewayAdmin); err == nil {
		sum.FilterRuntimes = rts
		names := make([]string, 0, len(rts))
		for n := range rts {
			names = append(names, n+"="+rts[n])
		}
		sort.Strings(names)
		fmt.Fprintf(out, "== The gateway's filters and how they run (native: the official build, its Go code linked in; wasm: wazero)\n  %s\n\n", strings.Join(names, "  "))
	} else {
		fmt.Fprintf(out, "== The gateway's filters: cannot read /config_dump: %v\n\n", err)
	}

	fmt.Fprintln(out, "== 1. Lanes: dyed traffic goes to payments v2")
	sum.OptIn = c.Run(ctx, 20, "/hello", func(int) map[string]string { return map[string]string{"x-canary": "true"} }, nil)
	fmt.Fprintf(out, "  20 requests with x-canary: true    -> %s\n", fmtSplit(sum.OptIn))
	r, err := c.Do(ctx, http.MethodGet, "/hello", map[string]string{"x-canary": "true", "baggage": "app=shop"}, nil)
	if err == nil && r.Status == 200 {
		sum.UpstreamDye, sum.UpstreamBaggage = r.Echo.Headers["x-mw-dye"], r.Echo.Headers["baggage"]
		fmt.Fprintf(out, "  upstream saw: x-mw-dye=%q baggage=%q\n", sum.UpstreamDye, sum.UpstreamBaggage)
	}

	fmt.Fprintf(out, "\n== 2. Canary: a sticky 10%% of users (by x-user-id) on the canary lane\n")
	user := func(i int) string { return fmt.Sprintf("user-%04d", i) }
	hdr := func(i int) map[string]string { return map[string]string{"x-user-id": user(i)} }
	sum.Users = c.Run(ctx, users, "/hello", hdr, user)
	sum.UsersAgain = c.Run(ctx, users, "/hello", hdr, user)
	for k, v := range sum.Users.Lanes {
		if sum.UsersAgain.Lanes[k] != v {
			sum.StickyMismatch++
		}
	}
	fmt.Fprintf(out, "  %d users, first pass   -> %s\n", users, fmtSplit(sum.Users))
	fmt.Fprintf(out, "  same users, again      -> %s\n", fmtSplit(sum.UsersAgain))
	fmt.Fprintf(out, "  users whose lane changed between passes: %d (sticky hashing)\n", sum.StickyMismatch)

	fmt.Fprintln(out, "\n== 3. Anti-spoofing: a client cannot pick its own lane")
	// Users the split kept on the default lane now claim the canary lane
	// themselves; the dye filter strips the claim and the rules decide.
	var plain []string
	for k, v := range sum.Users.Lanes {
		if strings.HasPrefix(v, "default@") && len(plain) < 20 {
			plain = append(plain, k)
		}
	}
	sort.Strings(plain)
	sum.SpoofUsers = len(plain)
	sum.Spoofed = c.Run(ctx, len(plain), "/hello", func(i int) map[string]string {
		return map[string]string{"x-user-id": plain[i], "x-mw-dye": "canary", "baggage": "mw-dye=canary"}
	}, nil)
	fmt.Fprintf(out, "  %d default-lane users send x-mw-dye: canary (and baggage mw-dye=canary) -> %s\n", len(plain), fmtSplit(sum.Spoofed))

	auditStory(ctx, st, c, sum, out)

	fmt.Fprintln(out, "\n== 5. Trace: one request across hops")
	tid := make([]byte, 16)
	_, _ = rand.Read(tid)
	sum.TraceID = hex.EncodeToString(tid)
	tp := "00-" + sum.TraceID + "-" + ClientSpanID + "-01"
	r, err = c.Do(ctx, http.MethodGet, "/hello", map[string]string{"traceparent": tp, "x-canary": "true"}, nil)
	if err == nil {
		fmt.Fprintf(out, "  sent traceparent %s\n  upstream received traceparent %s\n", tp, r.Echo.Headers["traceparent"])
	}
	// The trace filter's span for the hop, and the gateway's server and client spans.
	waitFor(ctx, 8*time.Second, func() bool { return len(st.Sink.Spans(sum.TraceID)) >= 3 })
	sum.TraceSpans = st.Sink.Spans(sum.TraceID)
	PrintTrace(out, sum.TraceSpans)

	fmt.Fprintln(out, "\n== 6. Certificates")
	printCerts(ctx, out, st)

	if !st.opts.InsecurePlane {
		fmt.Fprintln(out, "\n== 7. Zero trust: the plane answers only to credentials Consul vouches for")
		sum.Trust = printTrust(ctx, out, st)
	}
	if st.opts.MTLS {
		fmt.Fprintln(out, "\n== 8. Access: an AccessPolicy decides who may call a service")
		sum.Access = accessStory(ctx, st, out)
	}
	sum.Rollout = rolloutChapter(ctx, st, out)

	printSummary(out, sum, users)
	return sum, nil
}

// auditStory sends transfers the audit filter records fail-closed, shows
// the collector's records and verifies the trail.
func auditStory(ctx context.Context, st *Stack, c *Client, sum *Summary, out io.Writer) {
	fmt.Fprintln(out, "\n== 4. Audit: POST /v1/transfers is FUND_TRANSFER, fail-closed")
	for i := range 5 {
		body := fmt.Sprintf(`{"from":"acct-1","to":"acct-2","amount":%d,"card":{"number":"4111111111111111"}}`, 100+i)
		r, err := c.Do(ctx, http.MethodPost, "/v1/transfers", map[string]string{"x-mw-subject": "alice", "x-api-key": "secret-key"}, []byte(body))
		if err == nil && r.Status == 200 {
			sum.Transfers++
		} else if err == nil {
			fmt.Fprintf(out, "  transfer %d: status %d: %.200s\n", i, r.Status, r.Body)
		} else {
			fmt.Fprintf(out, "  transfer %d: %v\n", i, err)
		}
	}
	fmt.Fprintf(out, "  transfers answered 200: %d of 5\n", sum.Transfers)
	// Outcome records are batched by the filter's tick; give them a moment.
	waitFor(ctx, 5*time.Second, func() bool {
		n, _ := countAuditRecords(ctx, st)
		return n >= 2*sum.Transfers
	})
	q, _ := runCmd(ctx, st.opts.Binary, "audit", "query", "--dir", st.AuditDir, "--op-type", "FUND_TRANSFER")
	sum.AuditRecords, _ = countAuditRecords(ctx, st)
	fmt.Fprintf(out, "  records in the collector's WAL: %d (an intent before forwarding, an outcome after):\n", sum.AuditRecords)
	printAuditRecords(out, q)
	// The collector signs a checkpoint each --checkpoint-interval (1s here).
	// Verify fails closed on records no checkpoint covers yet, so wait until
	// it passes with every record signed (it says what held and what only a
	// witness could add).
	var v string
	var verr error
	waitFor(ctx, 5*time.Second, func() bool {
		v, verr = runCmd(ctx, st.opts.Binary, "audit", "verify", "--dir", st.AuditDir, "--pubkey", st.AuditPubKey)
		return verr == nil && !strings.Contains(v, "not signed yet")
	})
	sum.VerifyOutput, sum.VerifyOK = v, verr == nil
	fmt.Fprintf(out, "  $ meshwarden audit verify --dir %s --pubkey %s\n", st.AuditDir, st.AuditPubKey)
	for _, line := range strings.Split(strings.TrimSpace(v), "\n") {
		fmt.Fprintf(out, "    %s\n", line)
	}
}

// printAuditRecords prints the first records of an `audit query` output
// (JSON lines) as a table.
func printAuditRecords(out io.Writer, q string) {
	fmt.Fprintf(out, "    %-4s %-8s %-14s %-8s %-20s %-6s %-7s %s\n", "seq", "phase", "op_type", "subject", "request", "status", "dye", "hash")
	for i, line := range strings.Split(strings.TrimSpace(q), "\n") {
		var ev struct {
			Seq                                  uint64
			Phase, OpType, Subject, Method, Path string
			Status                               int
			Dye, Hash                            string
		}
		if json.Unmarshal([]byte(line), &struct {
			Seq     *uint64 `json:"seq"`
			Phase   *string `json:"phase"`
			OpType  *string `json:"op_type"`
			Subject *string `json:"subject"`
			Method  *string `json:"method"`
			Path    *string `json:"path"`
			Status  *int    `json:"status"`
			Dye     *string `json:"dye"`
			Hash    *string `json:"hash"`
		}{&ev.Seq, &ev.Phase, &ev.OpType, &ev.Subject, &ev.Method, &ev.Path, &ev.Status, &ev.Dye, &ev.Hash}) != nil {
			continue
		}
		if i >= 10 {
			fmt.Fprintln(out, "    …")
			break
		}
		status := "-"
		if ev.Status != 0 {
			status = fmt.Sprint(ev.Status)
		}
		fmt.Fprintf(out, "    %-4d %-8s %-14s %-8s %-20s %-6s %-7s %.16s…\n", ev.Seq, ev.Phase, ev.OpType, ev.Subject, ev.Method+" "+ev.Path, status, orDash(ev.Dye), ev.Hash)
	}
}

// printSummary prints the story's figures in a few lines.
func printSummary(out io.Writer, sum *Summary, users int) {
	fmt.Fprintln(out, "\n== Summary")
	fmt.Fprintf(out, "  opt-in canary -> v2: %d/20; sticky split: %d/%d users on canary, %d lane changes; spoofed dye honoured: %d/%d\n",
		sum.OptIn.ByVersion["v2"], countLane(sum.Users, "canary"), users, sum.StickyMismatch, sum.Spoofed.ByVersion["v2"], sum.SpoofUsers)
	fmt.Fprintf(out, "  audit: %d transfers, %d records, verify %s; trace %s: %d spans\n",
		sum.Transfers, sum.AuditRecords, okStr(sum.VerifyOK), sum.TraceID, len(sum.TraceSpans))
	if t := sum.Trust; t != nil {
		fmt.Fprintf(out, "  trust: anonymous xDS %s, impersonation %s, anonymous admin HTTP %d, private keys in dumps: %s\n",
			t.AnonymousXDS, t.ImpersonatedXDS, t.AnonymousAdmin, map[bool]string{true: "none shown", false: "SHOWN"}[t.DumpRedacted])
	}
	if a := sum.Access; a != nil {
		fmt.Fprintf(out, "  access: listed caller %d, unlisted caller %d, ACCESS_DENIED recorded %s\n", a.Listed, a.Unlisted, okStr(a.Record != ""))
	}
}

func okStr(ok bool) string {
	if ok {
		return "OK"
	}
	return "FAILED"
}

func countLane(sp Split, lane string) int {
	n := 0
	for _, v := range sp.Lanes {
		if strings.HasPrefix(v, lane+"@") {
			n++
		}
	}
	return n
}

func fmtSplit(sp Split) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sp.ByVersion)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, sp.ByVersion[k]))
	}
	s := strings.Join(parts, ", ")
	if sp.Failed > 0 {
		s += fmt.Sprintf(", failed: %d (%s)", sp.Failed, strings.Join(sp.Errors, "; "))
	}
	return s
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return cond()
}

func countAuditRecords(ctx context.Context, st *Stack) (int, error) {
	q, err := runCmd(ctx, st.opts.Binary, "audit", "query", "--dir", st.AuditDir)
	if err != nil {
		return 0, fmt.Errorf("audit query: %w: %s", err, q)
	}
	n := 0
	for _, line := range strings.Split(q, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			n++
		}
	}
	return n, nil
}

// PrintTrace prints spans as a tree (children under their parent, a span
// whose parent was not received as a root), one line per span: name,
// service, span and parent id, duration and the lane/status attributes.
func PrintTrace(out io.Writer, spans []otlpsink.Span) {
	if len(spans) == 0 {
		fmt.Fprintln(out, "  no spans arrived at the OTLP sink")
		return
	}
	children := map[string][]otlpsink.Span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	var roots []otlpsink.Span
	for _, s := range spans {
		if ids[s.ParentID] {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s otlpsink.Span, depth int)
	walk = func(s otlpsink.Span, depth int) {
		dur := time.Duration(s.EndNS - s.StartNS)
		if s.EndNS < s.StartNS {
			dur = 0
		}
		fmt.Fprintf(out, "  %s%-28s %-18s span %s parent %s %8s", strings.Repeat("  ", depth), s.Name, s.Service, s.SpanID, orDash(s.ParentID), dur.Round(time.Microsecond))
		for _, k := range []string{"mw.lane", "mw.dye", "http.status_code", "http.response.status_code"} {
			if v := s.Attrs[k]; v != "" {
				fmt.Fprintf(out, " %s=%s", k, v)
			}
		}
		fmt.Fprintln(out)
		for _, c := range children[s.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

func orDash(s string) string {
	if s == "" || strings.Trim(s, "0") == "" {
		return "-"
	}
	return s
}
