// Package promagent runs a real Prometheus server (Debian's prometheus
// package) for tests and the demo: on a free loopback port, with its TSDB
// and configuration in a temporary directory, scraping the targets it is
// given every ScrapeInterval, with optional rule files. Query asks it over
// its HTTP API, as a rollout's analysis or an operator would.
package promagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/testenv/proc"
)

// ErrNoBinary says no prometheus binary is installed.
var ErrNoBinary = errors.New("no prometheus binary: apt-get install prometheus (Debian), or set MESHWARDEN_PROMETHEUS")

// Target is one scrape job.
type Target struct {
	Job   string
	Addrs []string // host:port
	// Path is the metrics path (default /metrics).
	Path string
}

// Options configures a server.
type Options struct {
	// Binary is the prometheus executable (default: $MESHWARDEN_PROMETHEUS,
	// else prometheus on PATH).
	Binary string
	// Dir holds the configuration and the TSDB (default: a new temporary
	// directory, removed by Stop).
	Dir            string
	Targets        []Target
	ScrapeInterval time.Duration // default 1s
	// RuleFiles are copied next to the configuration and loaded, evaluated
	// every ScrapeInterval.
	RuleFiles []string
	// Log receives the server's output lines (nil: kept for errors only).
	Log io.Writer
}

// Server is a running Prometheus.
type Server struct {
	Addr   string // host:port of its HTTP API
	dir    string
	ownDir bool
	p      *proc.Proc
}

// FindBinary locates the prometheus executable.
func FindBinary() (string, error) {
	if b := os.Getenv("MESHWARDEN_PROMETHEUS"); b != "" {
		return b, nil
	}
	if b, err := exec.LookPath("prometheus"); err == nil {
		return b, nil
	}
	return "", ErrNoBinary
}

// Start writes the configuration, starts Prometheus and waits until it is
// ready (bounded by ctx and 60s).
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Binary == "" {
		b, err := FindBinary()
		if err != nil {
			return nil, err
		}
		o.Binary = b
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = time.Second
	}
	s := &Server{dir: o.Dir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "meshwarden-prometheus-")
		if err != nil {
			return nil, fmt.Errorf("prometheus dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	cfg, err := writeConfig(s.dir, o)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(ports[0])
	s.p, err = proc.StartSpec(proc.Spec{Name: "prometheus", Bin: o.Binary, Log: o.Log, Args: []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + filepath.Join(s.dir, "data"),
		"--web.listen-address=" + s.Addr,
		"--web.enable-lifecycle",
		"--storage.tsdb.retention.time=1d",
	}})
	if err != nil {
		s.cleanup()
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = s.p.WaitReady(ctx, 60*time.Second, 100*time.Millisecond, proc.HTTPOK(client, "http://"+s.Addr+"/-/ready"))
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	return s, nil
}

func writeConfig(dir string, o Options) (string, error) {
	var b strings.Builder
	iv := o.ScrapeInterval.String()
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", iv, iv)
	if len(o.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range o.RuleFiles {
			data, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("rule file: %w", err)
			}
			name := filepath.Base(f)
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "  - %q\n", name)
		}
	}
	b.WriteString("scrape_configs:\n")
	for _, t := range o.Targets {
		path := t.Path
		if path == "" {
			path = "/metrics"
		}
		q := make([]string, len(t.Addrs))
		for i, a := range t.Addrs {
			q[i] = strconv.Quote(a)
		}
		fmt.Fprintf(&b, "  - job_name: %q\n    metrics_path: %q\n    static_configs:\n      - targets: [%s]\n", t.Job, path, strings.Join(q, ", "))
	}
	p := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("prometheus config: %w", err)
	}
	return p, nil
}

// URL is the base URL of the HTTP API.
func (s *Server) URL() string { return "http://" + s.Addr }

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant query and returns the vector (a scalar result is
// one sample without labels).
func (s *Server) Query(ctx context.Context, q string) ([]Sample, error) {
	u := s.URL() + "/api/v1/query?query=" + url.QueryEscape(q)
	resp, err := httpget.Get(ctx, nil, u)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status, Error string
		Data          struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, body.Error)
	}
	return decodeResult(body.Data.ResultType, body.Data.Result)
}

func decodeResult(typ string, raw json.RawMessage) ([]Sample, error) {
	parse := func(v [2]any) (float64, error) {
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch typ {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(raw, &vec); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(vec))
		for _, e := range vec {
			f, err := parse(e.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Metric: e.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		if err != nil {
			return nil, err
		}
		return []Sample{{Value: f}}, nil
	default:
		return nil, fmt.Errorf("result type %q: want a vector or a scalar", typ)
	}
}

// Stop stops the server and removes its directory if Start made it.
func (s *Server) Stop() {
	if s.p != nil {
		s.p.Stop(10 * time.Second)
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}
