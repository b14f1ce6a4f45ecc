package meter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// countImports counts the imports, and the imported functions and globals
// (they come before the defined ones in their index spaces).
func (m *module) countImports(p []byte) error {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	m.nImports = n
	for range n {
		for range 2 { // module and field names
			if _, err := r.name(); err != nil {
				return err
			}
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // function: type index
			m.nImportFuncs++
			_, err = r.u32()
		case 0x01: // table: reftype, limits
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case 0x02: // memory: limits
			err = r.limits()
		case 0x03: // global: valtype, mutability
			m.nImportGlobals++
			_, err = r.bytes(2)
		default:
			return fmt.Errorf("import kind %#x: %w", kind, ErrUnsupported)
		}
		if err != nil {
			return err
		}
	}
	return r.end()
}

// rewriteGlobals remaps ref.func in the initialisers of a global section
// payload (nil: none yet) and appends the countdown: (mut i32) = 0.
func (m *module) rewriteGlobals(p []byte) ([]byte, error) {
	b := binary.AppendUvarint(nil, uint64(m.nGlobals+1))
	if p != nil {
		r := &reader{b: p}
		n, err := r.u32()
		if err != nil {
			return nil, err
		}
		for range n {
			t, err := r.bytes(2) // valtype, mutability
			if err != nil {
				return nil, err
			}
			b = append(b, t...)
			if b, err = m.expr(r, b, false); err != nil {
				return nil, err
			}
		}
		if err := r.end(); err != nil {
			return nil, err
		}
	}
	return append(b, 0x7f, 0x01, 0x41, 0x00, 0x0b), nil
}

func (m *module) rewriteExports(p []byte) ([]byte, error) {
	r, n, b, err := vector(p)
	if err != nil {
		return nil, err
	}
	for range n {
		name, err := r.name()
		if err != nil {
			return nil, err
		}
		b = appendName(b, name)
		kind, err := r.byte()
		if err != nil {
			return nil, err
		}
		i, err := r.u32()
		if err != nil {
			return nil, err
		}
		if kind == 0x00 {
			i = m.fn(i)
		}
		b = append(b, kind)
		b = binary.AppendUvarint(b, uint64(i))
	}
	return b, r.end()
}

// rewriteElements remaps the function indices of every element segment
// form (flags 0 to 7).
func (m *module) rewriteElements(p []byte) ([]byte, error) {
	r, n, b, err := vector(p)
	if err != nil {
		return nil, err
	}
	for range n {
		flags, err := r.u32()
		if err != nil {
			return nil, err
		}
		if flags > 7 {
			return nil, fmt.Errorf("element segment flags %d: %w", flags, ErrUnsupported)
		}
		b = binary.AppendUvarint(b, uint64(flags))
		if flags&2 != 0 && flags&1 == 0 { // explicit table index
			t, err := r.u32()
			if err != nil {
				return nil, err
			}
			b = binary.AppendUvarint(b, uint64(t))
		}
		if flags&1 == 0 { // active: offset expression
			if b, err = m.expr(r, b, false); err != nil {
				return nil, err
			}
		}
		if flags&3 != 0 { // elemkind or reftype
			k, err := r.byte()
			if err != nil {
				return nil, err
			}
			b = append(b, k)
		}
		cnt, err := r.u32()
		if err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(cnt))
		for range cnt {
			if flags&4 != 0 {
				if b, err = m.expr(r, b, false); err != nil {
					return nil, err
				}
				continue
			}
			i, err := r.u32()
			if err != nil {
				return nil, err
			}
			b = binary.AppendUvarint(b, uint64(m.fn(i)))
		}
	}
	return b, r.end()
}

// rewriteCode rewrites every function body.
func (m *module) rewriteCode(p []byte) ([]byte, error) {
	r, n, b, err := vector(p)
	if err != nil {
		return nil, err
	}
	b = append(make([]byte, 0, len(p)+len(p)/8), b...)
	var body []byte
	for i := range n {
		code, err := r.sized()
		if err != nil {
			return nil, err
		}
		if body, err = m.function(code, body[:0]); err != nil {
			return nil, fmt.Errorf("function %d: %w", m.nImportFuncs+i, err)
		}
		b = binary.AppendUvarint(b, uint64(len(body)))
		b = append(b, body...)
	}
	return b, r.end()
}

// function rewrites one body: locals unchanged, instructions walked.
func (m *module) function(code, b []byte) ([]byte, error) {
	r := &reader{b: code}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	for range n {
		if _, err := r.u32(); err != nil { // count
			return nil, err
		}
		if _, err := r.byte(); err != nil { // valtype
			return nil, err
		}
	}
	b = append(b, code[:r.pos]...)
	if b, err = m.expr(r, b, true); err != nil {
		return nil, err
	}
	return b, r.end()
}

// rewriteCustom drops DWARF sections and remaps the function indices of the
// name section; other custom sections are kept as they are. A name section
// it cannot parse is dropped (names only label stack traces).
func (m *module) rewriteCustom(p []byte) ([]byte, bool, error) {
	r := &reader{b: p}
	name, err := r.name()
	if err != nil {
		return nil, false, fmt.Errorf("custom section: %w", err)
	}
	switch {
	case strings.HasPrefix(name, ".debug_"):
		return nil, false, nil
	case name != "name":
		return p, true, nil
	}
	b := append([]byte(nil), p[:r.pos]...)
	b, err = m.rewriteNames(r, b)
	if err != nil {
		return nil, false, nil
	}
	return b, true, nil
}

func (m *module) rewriteNames(r *reader, b []byte) ([]byte, error) {
	for r.pos < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		sub, err := r.bytes(int(size))
		if err != nil {
			return nil, err
		}
		switch id {
		case 0: // module name: exactly one name. wazero reads it without
			// its size, so a size that disagrees makes it read on into
			// whatever follows the section — nothing in the original, a
			// section of ours in the copy (FuzzInstrumentAny's find).
			sr := &reader{b: sub}
			if _, err := sr.name(); err != nil {
				return nil, err
			}
			if err := sr.end(); err != nil {
				return nil, err
			}
		case 1, 2: // function names, local names: keyed by function index
			if sub, err = m.rewriteNameMap(sub, id == 2); err != nil {
				return nil, err
			}
		}
		b = append(b, id)
		b = binary.AppendUvarint(b, uint64(len(sub)))
		b = append(b, sub...)
	}
	return b, nil
}

// rewriteNameMap remaps the function indices of a name map (indirect: its
// values are name maps of their own, copied as they are).
func (m *module) rewriteNameMap(p []byte, indirect bool) ([]byte, error) {
	r, n, b, err := vector(p)
	if err != nil {
		return nil, err
	}
	for range n {
		i, err := r.u32()
		if err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(m.fn(i)))
		start := r.pos
		if indirect {
			k, err := r.u32()
			if err != nil {
				return nil, err
			}
			for range k {
				if _, err := r.u32(); err != nil {
					return nil, err
				}
				if _, err := r.name(); err != nil {
					return nil, err
				}
			}
		} else if _, err := r.name(); err != nil {
			return nil, err
		}
		b = append(b, r.b[start:r.pos]...)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return b, nil
}

var errTruncated = errors.New("truncated")

// vector starts reading a vector payload: its reader past the count, the
// count, and an output that starts with the count.
func vector(p []byte) (*reader, uint32, []byte, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, 0, nil, err
	}
	return r, n, binary.AppendUvarint(nil, uint64(n)), nil
}
