package preview

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/policies"
)

// Applied is the outcome of [ApplyRecorded].
type Applied struct {
	Result *ApplyResult
	Report *Report
	Record *policies.ChangeRecord
	// DiffError says why the preview diff could not be computed; the set
	// was still applied and the record says so.
	DiffError error
}

// ApplyRecorded applies files through the plane and records the change:
// it validates the files locally first (nothing is sent when they have
// errors), previews them against the plane for the record's diff, posts
// them, and on acceptance appends a change record (who, when, revision,
// diff) to log. source names where the files came from (the directory).
func ApplyRecorded(ctx context.Context, c *PlaneClient, files map[string][]byte, source string, log *policies.ChangeLog) (*Applied, error) {
	if _, _, err := policies.LoadFiles(files, nil); err != nil {
		return nil, err
	}
	out := &Applied{}
	var diff string
	prev := ""
	if rep, err := c.Diff(ctx, files); err != nil {
		out.DiffError = err
		diff = "(preview unavailable: " + err.Error() + ")\n"
	} else {
		out.Report = rep
		var b strings.Builder
		if err := rep.Format(&b); err != nil {
			return nil, err
		}
		diff = b.String()
	}
	if st, err := c.Status(ctx); err == nil {
		prev = revisionOf(st)
	}
	// Apply only over the revision the diff was made against: another
	// operator's apply in between makes the plane answer 409.
	res, err := c.ApplyIf(ctx, files, prev)
	if err != nil {
		return nil, err
	}
	out.Result = res
	if log != nil {
		rec, err := log.Append(ctx, policies.Change{
			Identity: identityOf(res), Time: time.Now(), Revision: res.Revision, Previous: prev, Source: source, Diff: diff,
		})
		if err != nil {
			return out, fmt.Errorf("applied revision %s but could not record it: %w", res.Revision, err)
		}
		out.Record = rec
	}
	return out, nil
}

// revisionOf digs a policy revision out of the plane's status document:
// "revision", "policy_revision" or {"policy": {"revision": ...}}.
func revisionOf(status []byte) string {
	var v map[string]any
	if err := json.Unmarshal(status, &v); err != nil {
		return ""
	}
	for _, k := range []string{"revision", "policy_revision"} {
		if s, ok := v[k].(string); ok {
			return s
		}
	}
	if p, ok := v["policy"].(map[string]any); ok {
		if s, ok := p["revision"].(string); ok {
			return s
		}
	}
	return ""
}

// identityOf is who the plane says applied: the authenticated principal.
func identityOf(r *ApplyResult) string {
	if r.AppliedBy == "" {
		return "unknown (the plane did not name the principal)"
	}
	return r.AppliedBy
}
