// Package health computes a health score per upstream subset from the four
// signals of the seed design (§3.3): p95 latency, error rate, throughput
// drop and pool saturation. The data is real: the plane scrapes the
// Prometheus metrics of the gateways (and any proxy exposing the same
// series) it is pointed at, and takes deltas between scrapes:
//
//   - meshwarden_gateway_request_duration_seconds{cluster} (histogram):
//     p95 of the window, as histogram_quantile does, over the latency
//     target (the policy's healthWeights.latencyTarget, else the route's
//     timeout);
//   - meshwarden_gateway_requests_total{cluster,code}: 5xx / all in the
//     window;
//   - the same counter's rate against its moving average: the share of
//     traffic lost (0 when traffic holds or grows);
//   - meshwarden_gateway_upstream_saturation{cluster}: the highest of
//     requests, connections and pending requests over their circuit
//     breaker limits.
//
// score = 1 - Σ weight·badness, each badness in [0,1]; weights come from the
// service's ResiliencePolicy (healthWeights), 0.25 each by default. A
// subset with a score below the threshold makes the scorer probe faster
// (adaptive probing): the scrape interval drops to the fast interval until
// every score recovers.
package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/ir"
)

// Metric names the scorer reads from a proxy's /metrics.
const (
	requestsMetric   = "meshwarden_gateway_requests_total"
	latencyMetric    = "meshwarden_gateway_request_duration_seconds"
	saturationMetric = "meshwarden_gateway_upstream_saturation"
)

// Config configures a Scorer.
type Config struct {
	// Targets are the Prometheus text endpoints to scrape, e.g. a
	// gateway's http://127.0.0.1:9901/metrics.
	Targets []string
	// Interval between scrapes while every subset is healthy (default
	// 15s); FastInterval while one is below Threshold (default Interval/4).
	Interval, FastInterval time.Duration
	// Threshold is the score below which a subset is unhealthy (default 0.7).
	Threshold float64
	// Policy returns the policy set in force (weights, timeouts); may be nil.
	Policy func() *ir.PolicySet
	// OnChange is called (without locks held) when the set of unhealthy
	// subsets changes; the plane rebuilds, so a policy's
	// outlierDetection.consecutive5xxWhenUnhealthy takes effect.
	OnChange func()
	// Client scrapes; nil means a client with a 5s timeout.
	Client *http.Client
	Logger *slog.Logger
}

// Signals are one subset's raw signals over the last window.
type Signals struct {
	P95Seconds     float64 `json:"p95_seconds"`
	ErrorRate      float64 `json:"error_rate"`
	ThroughputDrop float64 `json:"throughput_drop"`
	Saturation     float64 `json:"saturation"`
	// RPS is the request rate of the window; Requests its count.
	RPS      float64 `json:"rps"`
	Requests float64 `json:"requests"`
}

// Score is one subset's health.
type Score struct {
	Service string `json:"service"`
	// Subset is "" for the service's all-instances cluster.
	Subset  string             `json:"subset"`
	Score   float64            `json:"score"`
	Signals Signals            `json:"signals"`
	Weights ir.HealthWeights   `json:"weights"`
	Badness map[string]float64 `json:"badness"`
	// LatencyTarget is the p95 that counts as fully bad.
	LatencyTarget time.Duration `json:"latency_target"`
	Unhealthy     bool          `json:"unhealthy"`
	At            time.Time     `json:"at"`
}

// Status is what GET /v1/health returns.
type Status struct {
	Targets       []string      `json:"targets"`
	ProbeInterval time.Duration `json:"probe_interval"`
	LastScrape    time.Time     `json:"last_scrape"`
	ScrapeErrors  []string      `json:"scrape_errors,omitempty"`
	Threshold     float64       `json:"threshold"`
	Scores        []Score       `json:"scores"`
}

// sample is one scrape, summed over the targets, per cluster.
type sample struct {
	at         time.Time
	total      map[string]float64
	errors     map[string]float64
	buckets    map[string]map[float64]float64 // cumulative, by upper bound
	saturation map[string]float64
}

// Scorer scrapes and scores. Its zero value is not usable: use New.
type Scorer struct {
	cfg      Config
	mu       sync.Mutex
	prev     *sample
	baseline map[string]float64 // moving average of each cluster's rps
	scores   map[string]Score
	interval time.Duration
	last     time.Time
	errs     []string
}

// New returns a Scorer with cfg's defaults filled in.
func New(cfg Config) *Scorer {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.FastInterval <= 0 || cfg.FastInterval > cfg.Interval {
		cfg.FastInterval = cfg.Interval / 4
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = 0.7
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scorer{cfg: cfg, baseline: map[string]float64{}, scores: map[string]Score{}, interval: cfg.Interval}
}

// Run scrapes until ctx ends, at the interval the scores call for.
func (s *Scorer) Run(ctx context.Context) {
	for {
		s.Probe(ctx)
		t := time.NewTimer(s.ProbeInterval())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// ProbeInterval is the current scrape interval (fast while a subset is
// unhealthy).
func (s *Scorer) ProbeInterval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.interval
}

// Probe scrapes every target once and updates the scores.
func (s *Scorer) Probe(ctx context.Context) {
	cur := &sample{at: time.Now(), total: map[string]float64{}, errors: map[string]float64{},
		buckets: map[string]map[float64]float64{}, saturation: map[string]float64{}}
	var errs []string
	for _, t := range s.cfg.Targets {
		if err := s.scrape(ctx, t, cur); err != nil {
			errs = append(errs, err.Error())
			s.cfg.Logger.Warn("health scrape failed", "target", t, "err", err)
		}
	}
	var ps *ir.PolicySet
	if s.cfg.Policy != nil {
		ps = s.cfg.Policy()
	}
	s.mu.Lock()
	before := s.unhealthyKeyLocked()
	s.errs, s.last = errs, cur.at
	// A failed target makes the sums incomparable with the previous
	// scrape: skip this round and keep the last scores (the status shows
	// the errors).
	if len(errs) == 0 {
		if s.prev != nil {
			s.update(s.prev, cur, ps)
		}
		s.prev = cur
	}
	s.interval = s.cfg.Interval
	for _, sc := range s.scores {
		if sc.Unhealthy {
			s.interval = s.cfg.FastInterval
		}
	}
	changed := s.unhealthyKeyLocked() != before
	s.mu.Unlock()
	if changed {
		s.cfg.Logger.Info("unhealthy subsets changed", "unhealthy", s.unhealthyKey())
		if s.cfg.OnChange != nil {
			s.cfg.OnChange()
		}
	}
}

// Unhealthy returns the subsets scored below the threshold, service →
// subset ("" for the all-instances cluster).
func (s *Scorer) Unhealthy() map[string]map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[string]map[string]bool
	for _, sc := range s.scores {
		if !sc.Unhealthy {
			continue
		}
		if out == nil {
			out = map[string]map[string]bool{}
		}
		if out[sc.Service] == nil {
			out[sc.Service] = map[string]bool{}
		}
		out[sc.Service][sc.Subset] = true
	}
	return out
}

func (s *Scorer) unhealthyKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unhealthyKeyLocked()
}

func (s *Scorer) unhealthyKeyLocked() string {
	var keys []string
	for c, sc := range s.scores {
		if sc.Unhealthy {
			keys = append(keys, c)
		}
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (s *Scorer) scrape(ctx context.Context, target string, into *sample) error {
	resp, err := httpget.Get(ctx, s.cfg.Client, target)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: HTTP %d", target, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("scrape %s: %w", target, err)
	}
	addSample(fams, into)
	return nil
}

// addSample adds one target's series to the sample.
func addSample(fams map[string]*dto.MetricFamily, into *sample) {
	for _, m := range fams[requestsMetric].GetMetric() {
		c, code := label(m, "cluster"), label(m, "code")
		if c == "" {
			continue
		}
		v := m.GetCounter().GetValue()
		into.total[c] += v
		if strings.HasPrefix(code, "5") {
			into.errors[c] += v
		}
	}
	for _, m := range fams[latencyMetric].GetMetric() {
		c := label(m, "cluster")
		if c == "" {
			continue
		}
		if into.buckets[c] == nil {
			into.buckets[c] = map[float64]float64{}
		}
		for _, b := range m.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) { // +Inf is the sample count, added below
				into.buckets[c][b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		into.buckets[c][math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
	}
	for _, m := range fams[saturationMetric].GetMetric() {
		c := label(m, "cluster")
		into.saturation[c] = max(into.saturation[c], m.GetGauge().GetValue())
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// update scores every mesh cluster seen in cur against prev.
func (s *Scorer) update(prev, cur *sample, ps *ir.PolicySet) {
	secs := cur.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return
	}
	for c := range cur.total {
		svc, subset := splitCluster(c)
		if svc == "" {
			continue
		}
		sig := Signals{Saturation: cur.saturation[c]}
		sig.Requests = max(0, cur.total[c]-prev.total[c]) // a restarted proxy resets its counters
		sig.RPS = sig.Requests / secs
		if sig.Requests > 0 {
			sig.ErrorRate = min(1, max(0, cur.errors[c]-prev.errors[c])/sig.Requests)
			sig.P95Seconds = quantile(0.95, deltaBuckets(prev.buckets[c], cur.buckets[c]))
		}
		if base := s.baseline[c]; base > 0 {
			sig.ThroughputDrop = min(1, max(0, 1-sig.RPS/base))
		}
		s.baseline[c] = movingAverage(s.baseline[c], sig.RPS)
		w, target := weightsFor(ps, svc, subset)
		bad := map[string]float64{
			"latency":    min(1, sig.P95Seconds/target.Seconds()),
			"errors":     sig.ErrorRate,
			"throughput": sig.ThroughputDrop,
			"saturation": min(1, sig.Saturation),
		}
		score := 1 - (w.Latency*bad["latency"] + w.Errors*bad["errors"] + w.Throughput*bad["throughput"] + w.Saturation*bad["saturation"])
		score = math.Round(min(1, max(0, score))*1000) / 1000
		s.scores[c] = Score{Service: svc, Subset: subset, Score: score, Signals: sig, Weights: w, Badness: bad,
			LatencyTarget: target, Unhealthy: score < s.cfg.Threshold, At: cur.at}
	}
	for c := range s.scores {
		if _, ok := cur.total[c]; !ok { // the cluster is gone (or its proxy restarted)
			delete(s.scores, c)
			delete(s.baseline, c)
		}
	}
}

// movingAverage is an exponentially weighted average (alpha 0.3) seeded
// with the first value.
func movingAverage(avg, v float64) float64 {
	if avg == 0 {
		return v
	}
	return 0.7*avg + 0.3*v
}

// splitCluster maps a translator cluster name to service and subset;
// clusters that are not a service's (mw-*) give "".
func splitCluster(c string) (svc, subset string) {
	if strings.HasPrefix(c, "mw-") || c == "" {
		return "", ""
	}
	svc, subset, _ = strings.Cut(c, "~")
	return svc, subset
}

// weightsFor returns the service's weights (0.25 each by default) and the
// subset's latency target (healthWeights.latencyTarget, else the
// timeout of the subset's routes, else 15s).
func weightsFor(ps *ir.PolicySet, svc, subset string) (ir.HealthWeights, time.Duration) {
	w := ir.HealthWeights{Latency: 0.25, Errors: 0.25, Throughput: 0.25, Saturation: 0.25}
	target := 15 * time.Second
	if ps == nil {
		return w, target
	}
	for _, r := range ps.Routes {
		if r.Service == svc && r.Timeout > 0 {
			target = r.Timeout
		}
	}
	for i := range ps.Resilience {
		r := &ps.Resilience[i]
		if r.Service != svc {
			continue
		}
		if t := r.For(subset).Timeout; t > 0 {
			target = t
		}
		if r.Health != nil {
			w = *r.Health
			if r.Health.LatencyTarget > 0 {
				target = r.Health.LatencyTarget
			}
		}
	}
	w.LatencyTarget = 0
	return w, target
}

// deltaBuckets is cur - prev per upper bound.
func deltaBuckets(prev, cur map[float64]float64) map[float64]float64 {
	out := make(map[float64]float64, len(cur))
	for le, v := range cur {
		out[le] = max(0, v-prev[le])
	}
	return out
}

// quantile is Prometheus's histogram_quantile over cumulative buckets:
// linear interpolation inside the bucket that holds the rank; the +Inf
// bucket yields the highest finite bound.
func quantile(q float64, buckets map[float64]float64) float64 {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := buckets[bounds[len(bounds)-1]]
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if n == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return lower
}

// Status returns the scores, sorted by service and subset.
func (s *Scorer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Targets: s.cfg.Targets, ProbeInterval: s.interval, LastScrape: s.last, ScrapeErrors: s.errs, Threshold: s.cfg.Threshold}
	for _, sc := range s.scores {
		st.Scores = append(st.Scores, sc)
	}
	sort.Slice(st.Scores, func(i, j int) bool {
		a, b := st.Scores[i], st.Scores[j]
		return a.Service < b.Service || a.Service == b.Service && a.Subset < b.Subset
	})
	return st
}

var (
	scoreDesc = prometheus.NewDesc("meshwarden_controlplane_subset_health_score",
		"Health score per service subset (0-1): 1 - the weighted badness of p95 latency, error rate, throughput drop and pool saturation.",
		[]string{"service", "subset"}, nil)
	signalDesc = prometheus.NewDesc("meshwarden_controlplane_subset_health_signal",
		"Raw health signals per service subset: p95_seconds, error_rate, throughput_drop, saturation.",
		[]string{"service", "subset", "signal"}, nil)
	intervalDesc = prometheus.NewDesc("meshwarden_controlplane_health_probe_interval_seconds",
		"Current health scrape interval (shorter while a subset is unhealthy).", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Scorer) Describe(ch chan<- *prometheus.Desc) {
	ch <- scoreDesc
	ch <- signalDesc
	ch <- intervalDesc
}

// Collect implements prometheus.Collector.
func (s *Scorer) Collect(ch chan<- prometheus.Metric) {
	st := s.Status()
	ch <- prometheus.MustNewConstMetric(intervalDesc, prometheus.GaugeValue, st.ProbeInterval.Seconds())
	for _, sc := range st.Scores {
		sub := sc.Subset
		ch <- prometheus.MustNewConstMetric(scoreDesc, prometheus.GaugeValue, sc.Score, sc.Service, sub)
		for name, v := range map[string]float64{"p95_seconds": sc.Signals.P95Seconds, "error_rate": sc.Signals.ErrorRate,
			"throughput_drop": sc.Signals.ThroughputDrop, "saturation": sc.Signals.Saturation} {
			ch <- prometheus.MustNewConstMetric(signalDesc, prometheus.GaugeValue, v, sc.Service, sub, name)
		}
	}
}

var _ prometheus.Collector = (*Scorer)(nil)

// FormatScore is a one-line text form for the CLI.
func FormatScore(sc Score) string {
	sub := sc.Subset
	if sub == "" {
		sub = "(all)"
	}
	state := "ok"
	if sc.Unhealthy {
		state = "UNHEALTHY"
	}
	return fmt.Sprintf("%-20s %-10s %5.3f %-9s p95=%s errors=%s drop=%s saturation=%s rps=%s",
		sc.Service, sub, sc.Score, state, time.Duration(sc.Signals.P95Seconds*float64(time.Second)).Round(time.Millisecond),
		pct(sc.Signals.ErrorRate), pct(sc.Signals.ThroughputDrop), pct(sc.Signals.Saturation), strconv.FormatFloat(sc.Signals.RPS, 'f', 1, 64))
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }
