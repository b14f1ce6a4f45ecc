package audit

import (
	"regexp"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
)

// maxDetections bounds the detections kept per scanned value, so a body
// full of card numbers costs bounded memory in the guest.
const maxDetections = 64

// Detection is one match of a detector in a scanned value: bytes
// [Start, End).
type Detection struct {
	Name       string
	Start, End int
}

// Detector runs the built-in detectors (hand-written single-pass scanners:
// no regexp, no allocation but the result) and the configured RE2
// patterns. It is immutable and safe to share.
type Detector struct {
	card, iban, email, phone bool
	patterns                 []namedRegexp
}

type namedRegexp struct {
	name string
	re   *regexp.Regexp
}

// NewDetector compiles a validated PII configuration.
func NewDetector(p *auditconfig.PII) *Detector {
	d := &Detector{}
	for _, n := range p.Detectors {
		switch n {
		case auditconfig.DetectCard:
			d.card = true
		case auditconfig.DetectIBAN:
			d.iban = true
		case auditconfig.DetectEmail:
			d.email = true
		case auditconfig.DetectPhone:
			d.phone = true
		}
	}
	for _, pt := range p.Patterns {
		d.patterns = append(d.patterns, namedRegexp{pt.Name, regexp.MustCompile(pt.Regex)})
	}
	return d
}

// Scan appends the detections in b to dst (at most maxDetections in all)
// and returns it. Built-in matches do not overlap; patterns are matched
// independently.
func (d *Detector) Scan(dst []Detection, b []byte) []Detection {
	for i := 0; i < len(b) && len(dst) < maxDetections; {
		c := b[i]
		if d.card && isDigit(c) && (i == 0 || !isAlnum(b[i-1]) && b[i-1] != '+') {
			if end := cardAt(b, i); end > 0 {
				dst = append(dst, Detection{auditconfig.DetectCard, i, end})
				i = end
				continue
			}
		}
		if d.iban && isUpper(c) && (i == 0 || !isAlnum(b[i-1])) {
			if end := ibanAt(b, i); end > 0 {
				dst = append(dst, Detection{auditconfig.DetectIBAN, i, end})
				i = end
				continue
			}
		}
		if d.phone && c == '+' && (i == 0 || !isAlnum(b[i-1])) {
			if end := phoneAt(b, i); end > 0 {
				dst = append(dst, Detection{auditconfig.DetectPhone, i, end})
				i = end
				continue
			}
		}
		if d.email && c == '@' {
			if start, end := emailAround(b, i); end > 0 {
				// The local part was passed over already; it cannot have
				// matched another detector (it would have moved i past).
				dst = append(dst, Detection{auditconfig.DetectEmail, start, end})
				i = end
				continue
			}
		}
		i++
	}
	for _, p := range d.patterns {
		if len(dst) >= maxDetections {
			break
		}
		for _, m := range p.re.FindAllIndex(b, maxDetections-len(dst)) {
			dst = append(dst, Detection{p.name, m[0], m[1]})
		}
	}
	return dst
}

// cardAt matches a payment card number starting at b[i]: 13 to 19 digits,
// single spaces or dashes allowed between digits, not followed by an
// alphanumeric, passing the Luhn check. It returns the end, or 0.
func cardAt(b []byte, i int) int {
	var digits [19]byte
	n, j, end := 0, i, 0
	for j < len(b) {
		c := b[j]
		if isDigit(c) {
			if n == len(digits) {
				return 0 // a longer number is not a card
			}
			digits[n] = c - '0'
			n++
			j++
			end = j
			continue
		}
		if (c == ' ' || c == '-') && j+1 < len(b) && isDigit(b[j+1]) && n > 0 {
			j++
			continue
		}
		break
	}
	if n < 13 || end < len(b) && isAlnum(b[end]) {
		return 0
	}
	if !luhn(digits[:n]) {
		return 0
	}
	return end
}

// luhn reports whether the digits pass the Luhn (mod 10) check.
func luhn(d []byte) bool {
	sum := 0
	for k := 0; k < len(d); k++ {
		v := int(d[len(d)-1-k])
		if k%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// ibanAt matches an IBAN at b[i]: two capital letters, two check digits,
// 11 to 30 capital letters or digits (single spaces allowed between
// groups), 15 to 34 characters in all, whose ISO 7064 mod-97 is 1.
func ibanAt(b []byte, i int) int {
	if i+4 > len(b) || !isUpper(b[i+1]) || !isDigit(b[i+2]) || !isDigit(b[i+3]) {
		return 0
	}
	var buf [34]byte
	n, j, end := 0, i, 0
	for j < len(b) {
		c := b[j]
		if isDigit(c) || isUpper(c) {
			if n == len(buf) {
				return 0
			}
			buf[n] = c
			n++
			j++
			end = j
			continue
		}
		if c == ' ' && n >= 4 && j+1 < len(b) && (isDigit(b[j+1]) || isUpper(b[j+1])) {
			j++
			continue
		}
		break
	}
	if n < 15 || end < len(b) && isAlnum(b[end]) {
		return 0
	}
	// Move the first four characters to the end, letters as 10..35, mod 97.
	rem := 0
	for k := 0; k < n; k++ {
		c := buf[(k+4)%n]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	if rem != 1 {
		return 0
	}
	return end
}

// phoneAt matches an E.164-ish number at b[i] == '+': a first digit 1-9,
// 8 to 15 digits in all, single spaces, dashes, dots or parentheses
// between them, not followed by a digit.
func phoneAt(b []byte, i int) int {
	if i+1 >= len(b) || b[i+1] < '1' || b[i+1] > '9' {
		return 0
	}
	n, j, end := 0, i+1, 0
	for j < len(b) {
		c := b[j]
		if isDigit(c) {
			n++
			if n > 15 {
				return 0
			}
			j++
			end = j
			continue
		}
		if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') && j+1 < len(b) && (isDigit(b[j+1]) || b[j+1] == '(') && b[j-1] != c {
			j++
			continue
		}
		break
	}
	if n < 8 || end < len(b) && isAlnum(b[end]) {
		return 0
	}
	return end
}

// emailAround matches local@domain.tld around b[at] == '@' and returns its
// bounds, or 0, 0.
func emailAround(b []byte, at int) (int, int) {
	start := at
	for start > 0 && at-start < 64 && isLocal(b[start-1]) {
		start--
	}
	if start == at || b[start] == '.' {
		return 0, 0
	}
	end, dots, lastDot := at+1, 0, -1
	for end < len(b) && end-at < 255 && (isAlnum(b[end]) || b[end] == '-' || b[end] == '.' && end > at+1 && b[end-1] != '.') {
		if b[end] == '.' {
			dots++
			lastDot = end
		}
		end++
	}
	if end > at+1 && b[end-1] == '.' { // a sentence's full stop
		end--
		dots--
		lastDot = -1
		for k := end - 1; k > at; k-- {
			if b[k] == '.' {
				lastDot = k
				break
			}
		}
	}
	if dots < 1 || lastDot < 0 || end-lastDot-1 < 2 {
		return 0, 0
	}
	for k := lastDot + 1; k < end; k++ {
		if !isLetter(b[k]) {
			return 0, 0
		}
	}
	return start, end
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// maskBytes stars b in place but its last keep bytes (all of it when it is
// no longer than keep). Detected values are ASCII, so bytes are characters.
func maskBytes(b []byte, keep int) {
	n := len(b) - keep
	if n <= 0 {
		n = len(b)
	}
	for i := 0; i < n; i++ {
		if b[i] != ' ' && b[i] != '-' {
			b[i] = '*'
		}
	}
}
