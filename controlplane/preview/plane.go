package preview

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/controlplane/health"
)

// maxResponse bounds what is read from the plane.
const maxResponse = 64 << 20

// PlaneClient talks to a control plane's admin HTTP API:
//
//	GET  /v1/nodes                  known nodes
//	GET  /v1/config_dump?node=ID    a node's current resources (JSON or YAML dump)
//	POST /v1/policies:translate     body {"file.yaml": "content", ...}; per-node resources, nothing applied
//	POST /v1/policies:apply         same body; the accepted revision, or the errors
//	GET  /v1/status                 the plane's status (revision, last rejection, ...)
type PlaneClient struct {
	// Base is the admin address, "host:port" or a URL.
	Base string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

func (c *PlaneClient) url(path string) string {
	base := c.Base
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return strings.TrimSuffix(base, "/") + path
}

// PlaneError is a refusal by the plane (an HTTP status other than 2xx); Body
// holds its explanation, for a rejected set the errors per file and line.
type PlaneError struct {
	Status int
	Body   string
}

func (e *PlaneError) Error() string {
	return fmt.Sprintf("control plane answered %d: %s", e.Status, strings.TrimSpace(e.Body))
}

func (c *PlaneClient) do(ctx context.Context, method, path string, body any, hdr http.Header) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), rd)
	if err != nil {
		return nil, fmt.Errorf("control plane address %q: %w", c.Base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the control plane at %s (check --plane): %w", c.Base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("read the control plane's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		body := string(b)
		// The plane answers errors as {"error": "..."}; show the message.
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			body = e.Error
		}
		return b, &PlaneError{Status: resp.StatusCode, Body: body}
	}
	return b, nil
}

// Nodes returns the ids of the nodes the plane knows, sorted. It accepts a
// JSON list of ids, a list of objects with "id", or {"nodes": [...]}.
func (c *PlaneClient) Nodes(ctx context.Context) ([]string, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("GET /v1/nodes: not JSON: %w", err)
	}
	if m, ok := v.(map[string]any); ok {
		v = m["nodes"]
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("GET /v1/nodes: want a list of nodes, got %s", truncate(b))
	}
	var ids []string
	for _, item := range list {
		switch x := item.(type) {
		case string:
			ids = append(ids, x)
		case map[string]any:
			for _, k := range []string{"id", "ID", "node"} {
				if s, ok := x[k].(string); ok {
					ids = append(ids, s)
					break
				}
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// ConfigDump returns a node's current resources.
func (c *PlaneClient) ConfigDump(ctx context.Context, node string) (Resources, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/config_dump?node="+url.QueryEscape(node), nil, nil)
	if err != nil {
		return nil, err
	}
	var dump map[string]any
	if err := yaml.Unmarshal(b, &dump); err != nil {
		return nil, fmt.Errorf("config_dump of %s: %w", node, err)
	}
	return FromDump(dump)
}

// Translate asks the plane what each node's resources would be with files,
// without applying them. It accepts {"nodes": {id: dump}} or {id: dump}.
func (c *PlaneClient) Translate(ctx context.Context, files map[string][]byte) (map[string]Resources, error) {
	b, err := c.do(ctx, http.MethodPost, "/v1/policies:translate", fileBody(files), nil)
	if err != nil {
		return nil, err
	}
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("policies:translate: %w", err)
	}
	nodes := top
	if n, ok := top["nodes"].(map[string]any); ok {
		nodes = n
	}
	out := map[string]Resources{}
	for id, d := range nodes {
		dump, ok := d.(map[string]any)
		if !ok {
			continue
		}
		res, err := FromDump(dump)
		if err != nil {
			return nil, err
		}
		out[id] = res
	}
	return out, nil
}

// Diff previews files against the plane: the current dump of every node the
// plane knows (and every node the candidate yields) against the candidate.
func (c *PlaneClient) Diff(ctx context.Context, files map[string][]byte) (*Report, error) {
	cand, err := c.Translate(ctx, files)
	if err != nil {
		return nil, err
	}
	ids, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	cur := map[string]Resources{}
	for _, id := range ids {
		res, err := c.ConfigDump(ctx, id)
		if err != nil {
			var pe *PlaneError
			if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
				continue
			}
			return nil, err
		}
		cur[id] = res
	}
	return Compare(cur, cand), nil
}

// ApplyResult is the plane's answer to an accepted set.
type ApplyResult struct {
	Revision string `json:"revision"`
	// AppliedBy is the principal the plane authenticated (e.g. "consul
	// token <accessor> (<description>)"): who the change log records.
	AppliedBy string `json:"applied_by"`
	// Raw is the whole answer.
	Raw json.RawMessage `json:"-"`
}

// Apply posts files to the plane, which validates, translates and swaps them
// in whole, or rejects them whole (a *PlaneError with the errors).
// The plane records who applied from the credential of the call (HTTP's
// client), never from anything the caller writes.
func (c *PlaneClient) Apply(ctx context.Context, files map[string][]byte) (*ApplyResult, error) {
	return c.ApplyIf(ctx, files, "")
}

// ApplyIf is Apply that succeeds only if the revision in force is still
// ifRevision (the one previewed); otherwise the plane answers 409 and
// nothing changes. "" skips the check.
func (c *PlaneClient) ApplyIf(ctx context.Context, files map[string][]byte, ifRevision string) (*ApplyResult, error) {
	var hdr http.Header
	if ifRevision != "" {
		hdr = http.Header{"If-Match": []string{`"` + ifRevision + `"`}}
	}
	b, err := c.do(ctx, http.MethodPost, "/v1/policies:apply", fileBody(files), hdr)
	if err != nil {
		return nil, err
	}
	r := &ApplyResult{Raw: b}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("policies:apply: answer is not JSON: %s", truncate(b))
	}
	return r, nil
}

// Status returns the plane's status document as it sent it.
func (c *PlaneClient) Status(ctx context.Context) (json.RawMessage, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// NodeStatus is one node as GET /v1/nodes reports it.
type NodeStatus struct {
	ID          string `json:"id"`
	Cluster     string `json:"cluster"`
	Gateway     bool   `json:"gateway"`
	Service     string `json:"service,omitempty"`
	Streams     int    `json:"streams"`
	Version     string `json:"version,omitempty"`
	GoodVersion string `json:"good_version,omitempty"`
	Error       string `json:"error,omitempty"`
}

// NodeStatuses returns every node the plane serves, as GET /v1/nodes
// reports them (needs operator:read).
func (c *PlaneClient) NodeStatuses(ctx context.Context) ([]NodeStatus, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, nil)
	if err != nil {
		return nil, err
	}
	var out []NodeStatus
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("GET /v1/nodes: want a list of nodes: %w", err)
	}
	return out, nil
}

// ConfigDumpYAML returns a node's current resources as the plane renders
// them (YAML; secrets redacted; needs mesh:read).
func (c *PlaneClient) ConfigDumpYAML(ctx context.Context, node string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "/v1/config_dump?node="+url.QueryEscape(node), nil, nil)
}

func fileBody(files map[string][]byte) map[string]string {
	m := make(map[string]string, len(files))
	for k, v := range files {
		m[k] = string(v)
	}
	return m
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// Health returns the subset health scores (GET /v1/health, operator:read).
func (c *PlaneClient) Health(ctx context.Context) (*health.Status, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/health", nil, nil)
	if err != nil {
		return nil, err
	}
	var st health.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("the plane's /v1/health is not JSON: %w", err)
	}
	return &st, nil
}
