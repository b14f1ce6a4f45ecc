// Package dye holds the one definition of Meshwarden's traffic-dyeing
// conventions. The dye filter, the control plane's route translator and the
// gateway all read these names from here, so a lane set by one hop is the
// lane matched by the next.
//
// A request's lane travels in two places:
//   - the header [Header] (value: the lane name, e.g. "canary"), which routes
//     match on;
//   - the W3C baggage entry [BaggageKey] (baggage: mw-dye=canary), which
//     applications already forward with their trace context, so the lane
//     survives hops through code that knows nothing of Meshwarden.
//
// Lanes may be scoped to a tenant: the tenant travels in [TenantHeader] and
// the baggage entry [BaggageTenantKey].
package dyeing

import (
	"regexp"

	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

const (
	// Header carries the lane on the wire and is what routes match.
	Header = "x-mw-dye"
	// TenantHeader carries the tenant the lane is scoped to.
	TenantHeader = "x-mw-tenant"
	// BaggageKey is the W3C baggage member that mirrors Header.
	BaggageKey = "mw-dye"
	// BaggageTenantKey is the W3C baggage member that mirrors TenantHeader.
	BaggageTenantKey = "mw-tenant"
	// DefaultLane is the lane of undyed traffic.
	DefaultLane = "default"
	// MaxLaneLen bounds a lane name.
	MaxLaneLen = 63
)

var laneRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidLane reports whether s is a well-formed lane name: lowercase letters,
// digits and '-', 1 to 63 characters, starting and ending alphanumeric (a DNS
// label, so a lane can name a subset or a Consul meta value).
func ValidLane(s string) bool { return laneRE.MatchString(s) }

// CheckLane returns an error saying what to change when s is not a valid lane.
func CheckLane(s string) error {
	if !ValidLane(s) {
		return guestfmt.Errorf("lane %q is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", s)
	}
	return nil
}
