package audit

import (
	"strings"

	"github.com/meshwarden/meshwarden/filters/kit"
	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// OpResidencyRefused is the op_type of the record the filter writes when
// the proxy refused an unaudited request under a residency rule (a direct
// response carrying meshnames.RefusedHeader); its resource is
// "<target service>#residency", blocked the header's value and tags the
// service's compliance tags.
const OpResidencyRefused = "RESIDENCY_REFUSED"

// codeDetailsDirect is Envoy's response code details of a route's
// direct_response.
const codeDetailsDirect = "direct_response"

// residencyRefusal reports the refusal on a response the proxy's router
// answered itself under a residency rule: the refused header's value and
// the compliance tags. An upstream cannot forge it: the details must be
// direct_response.
func residencyRefusal(vm *proxywasm.VM) (reason string, tags []string, ok bool) {
	reason, _ = vm.GetHttpResponseHeader(meshnames.RefusedHeader)
	if !strings.HasPrefix(reason, meshnames.RefusedResidency) {
		return "", nil, false
	}
	if d, err := vm.GetPropertyString(propCodeDetails); err != nil || d != codeDetailsDirect {
		return "", nil, false
	}
	if t, _ := vm.GetHttpResponseHeader(meshnames.ComplianceTagsHeader); t != "" {
		tags = strings.Split(t, ",")
	}
	return reason, tags, true
}

// onResidencyRefusal marks an audited request's record blocked with the
// reason and the service's tags, or queues a RESIDENCY_REFUSED record for
// a request no rule audits: every refusal leaves a record.
func (h *httpContext) onResidencyRefusal(status int) {
	reason, tags, ok := residencyRefusal(h.p.vm)
	if !ok {
		return
	}
	if h.rule >= 0 {
		h.ev.Blocked = reason
		for _, t := range tags {
			if !containsStr(h.ev.Tags, t) {
				h.ev.Tags = append(h.ev.Tags[:len(h.ev.Tags):len(h.ev.Tags)], t)
			}
		}
		return
	}
	ev := h.refusalEvent(OpResidencyRefused, h.p.target+"#"+meshnames.RefusedResidency, status)
	ev.Blocked = reason
	for _, t := range tags {
		if !containsStr(ev.Tags, t) {
			ev.Tags = append(ev.Tags, t)
		}
	}
	h.queueRefusal(&ev)
}

// refusalEvent is the outcome record of a request the proxy refused before
// any audit rule saw it (ACCESS_DENIED, RESIDENCY_REFUSED).
func (h *httpContext) refusalEvent(op, resource string, status int) auditevent.Event {
	get := func(n string) string { v, _ := h.p.vm.GetHttpRequestHeader(n); return v }
	path, _, _ := strings.Cut(get(":path"), "?")
	peer, _ := h.p.vm.GetPropertyString(kit.PropPeerURISAN)
	if peer == "" {
		peer = "anonymous"
	}
	return auditevent.Event{
		Tags:  h.p.engine.WithServiceTags(nil),
		Phase: auditevent.PhaseOutcome, Level: auditevent.LevelNotice, OpType: op,
		Subject: peer, Resource: resource,
		Timestamp: h.p.vm.GetCurrentTime().UnixNano(), TraceID: traceID(get), Dye: get(dyeing.Header), Tenant: get(dyeing.TenantHeader),
		Method: get(":method"), Path: path, Status: status, Source: h.p.source,
	}
}

// queueRefusal gives ev its id and queues it.
func (h *httpContext) queueRefusal(ev *auditevent.Event) {
	var n [8]byte
	_, _ = h.p.rnd.Read(n[:])
	t := ev.TraceID
	if t == "" {
		t = "notrace"
	}
	ev.ID = t + "-" + guestfmt.Hex(n[:]) + "-" + string(auditevent.PhaseOutcome)
	h.p.b.Add(appendCanonical(h.p.b.ItemBuf(), ev))
}
