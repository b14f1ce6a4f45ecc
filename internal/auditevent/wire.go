package auditevent

// The wire format between proxies (the audit filter, the gateway) and the
// collector. A proxy POSTs a Batch as JSON to the collector's
// [IngestPath]; the collector answers 200 with an Ack only once every event
// in the batch is durable (fsynced). Any other status means nothing in the
// batch may be assumed stored, and the sender retries or, for fail-closed
// intent records, refuses the request.

const (
	// IngestPath is the collector's HTTP endpoint for batches.
	IngestPath = "/v1/audit/events"
	// TokenHeader carries the shared sender token until mTLS identities
	// authenticate senders.
	TokenHeader = "x-mw-audit-token"
	// ContentType of a Batch.
	ContentType = "application/json"
)

// Batch is what a proxy sends.
type Batch struct {
	// Sender names the proxy (node id); informational, the collector
	// authenticates the connection, not this field.
	Sender string  `json:"sender"`
	Events []Event `json:"events"`
}

// Ack is the collector's answer to a durable batch.
type Ack struct {
	// Accepted is the number of events stored.
	Accepted int `json:"accepted"`
	// FirstSeq and LastSeq are the chain positions given to them.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Hash is the chain head after the batch.
	Hash string `json:"hash"`
	// Duplicates lists the events of the batch whose id the collector had
	// already stored: they were not stored again, and Seq is where the first
	// copy is. Accepted, FirstSeq and LastSeq count only new records.
	Duplicates []Duplicate `json:"duplicates,omitempty"`
}

// Duplicate names an event id that was already in the chain, and its seq.
type Duplicate struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
}
