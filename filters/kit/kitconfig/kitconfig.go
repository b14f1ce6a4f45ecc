// Package kitconfig is what the filters' configuration packages share: the
// strict JSON decode, the error that names a field, and the checks of names
// more than one filter uses. It imports no ABI package, so the policy loader
// and the control plane use it through the filters' config packages without
// linking guest code.
package kitconfig

import (
	"bytes"
	"strings"

	"github.com/meshwarden/meshwarden/internal/guestfmt"
	"github.com/meshwarden/meshwarden/internal/guestjson"
)

// FieldError is a configuration error at one field path, e.g.
// "dye config: rules[0].lane: ...". The policy loader reports Field under
// the document's spec.
type FieldError struct {
	// Filter names the filter whose configuration is at fault.
	Filter string
	// Field is the JSON path of the field, e.g. rules[0].lane.
	Field string
	// Reason says what is wrong and what to change.
	Reason string
}

func (e *FieldError) Error() string { return e.Filter + " config: " + e.Field + ": " + e.Reason }

// Errorf returns a FieldError of filter at field, its reason formatted.
func Errorf(filter, field, format string, args ...any) error {
	return &FieldError{Filter: filter, Field: field, Reason: guestfmt.Sprintf(format, args...)}
}

// Config is what every filter configuration provides.
type Config interface {
	// SetDefaults fills the fields whose zero value means "default".
	SetDefaults()
	// Validate checks the configuration and names the field at fault.
	Validate() error
}

// Parse decodes a filter's JSON configuration strictly (unknown fields,
// values of the wrong type and trailing data are errors, each naming the
// field or byte at fault), applies defaults and validates it. Empty input
// is the default configuration.
func Parse[T any, PT interface {
	*T
	Config
}](filter string, data []byte) (*T, error) {
	c := PT(new(T))
	if len(bytes.TrimSpace(data)) > 0 {
		// guestjson, not encoding/json: this code runs in the guests, which
		// must not link fmt (filters/README.md).
		if err := guestjson.Unmarshal(data, c); err != nil {
			return nil, guestfmt.Errorf("%s config: %w", filter, err)
		}
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return (*T)(c), nil
}

// Default sets *field to def when it holds its zero value ("default").
func Default[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// CheckIdentity checks a peer identity of a filter configuration: a SPIFFE
// id, or a prefix of one ending in "/*".
func CheckIdentity(id string) error {
	if !strings.HasPrefix(id, "spiffe://") || len(id) <= len("spiffe://") {
		return guestfmt.Errorf("%q is not a SPIFFE id: write spiffe://<trust-domain>/<path>, or end it in /* for a prefix", id)
	}
	if i := strings.IndexByte(id, '*'); i >= 0 && (i != len(id)-1 || !strings.HasSuffix(id, "/*")) {
		return guestfmt.Errorf("%q: '*' is allowed only as a final /* segment", id)
	}
	return nil
}

// ValidHeaderName reports whether s is a header name as the filters write
// them: lowercase letters, digits, '-' and '_'.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HeaderNameReason is the reason of a FieldError for a bad header name.
const HeaderNameReason = "%q is not a header name: use lowercase letters, digits and '-'"

// ValidMethod reports whether m is a method as the filters write them:
// non-empty and upper case.
func ValidMethod(m string) bool { return m != "" && strings.ToUpper(m) == m }

// MethodReason is the reason of a FieldError for a bad method.
const MethodReason = "%q: write methods in upper case, e.g. POST"

// Delivery is the part of a filter configuration that says how its records
// reach a collector in batches (the audit and trace filters), with the
// names of the fields that differ between filters.
type Delivery struct {
	// Path is collector.path; TimeoutMs is collector.timeoutMs.
	Path      string
	TimeoutMs int
	// MaxItems is the batch size, at field MaxItemsField (e.g.
	// batch.maxEvents), whose default is DefaultMaxItems.
	MaxItems        int
	MaxItemsField   string
	DefaultMaxItems int
	// FlushIntervalMs is batch.flushIntervalMs.
	FlushIntervalMs int
	// BufferItems bounds the items waiting, at field BufferItemsField.
	BufferItems      int
	BufferItemsField string
}

// Validate checks the delivery fields of filter's configuration.
func (d *Delivery) Validate(filter string) error {
	if d.Path != "" && !strings.HasPrefix(d.Path, "/") {
		return Errorf(filter, "collector.path", "%q must start with '/'", d.Path)
	}
	if d.TimeoutMs < 0 || d.TimeoutMs > 60000 {
		return Errorf(filter, "collector.timeoutMs", "%d is out of range: use 1 to 60000 (0 means 2000)", d.TimeoutMs)
	}
	if d.MaxItems < 0 || d.MaxItems > 10000 {
		return Errorf(filter, d.MaxItemsField, "%d is out of range: use 1 to 10000 (0 means %d)", d.MaxItems, d.DefaultMaxItems)
	}
	if d.FlushIntervalMs < 0 || (d.FlushIntervalMs > 0 && d.FlushIntervalMs < 10) || d.FlushIntervalMs > 600000 {
		return Errorf(filter, "batch.flushIntervalMs", "%d is out of range: use 10 to 600000 (0 means 1000)", d.FlushIntervalMs)
	}
	if d.BufferItems < 0 || (d.BufferItems > 0 && d.BufferItems < d.MaxItems) {
		return Errorf(filter, d.BufferItemsField, "%d must be at least %s (%d)", d.BufferItems, d.MaxItemsField, d.MaxItems)
	}
	return nil
}
