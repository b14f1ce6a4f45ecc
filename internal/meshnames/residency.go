package meshnames

// Headers of the local replies the plane emits for a compliance refusal
// (a residency rule with no endpoint left in an allowed region). The audit
// filter reads them, on a direct response only, to record the refusal.
const (
	// RefusedHeader says why the proxy refused: "residency:<allowed
	// regions, comma-separated>".
	RefusedHeader = "x-mw-refused"
	// ComplianceTagsHeader lists the service's compliance tags,
	// comma-separated (pci,gdpr,region=eu).
	ComplianceTagsHeader = "x-mw-compliance-tags"
	// RefusedResidency starts RefusedHeader for a residency refusal.
	RefusedResidency = "residency"
	// ComplianceTagsMeta is the Consul service meta key whose value
	// (comma-separated) adds compliance tags to a service, beside its
	// CompliancePolicy's.
	ComplianceTagsMeta = "mw-compliance-tags"
	// ResidencyRefusedStatus is the status of a residency refusal (451
	// Unavailable For Legal Reasons).
	ResidencyRefusedStatus = 451
)
