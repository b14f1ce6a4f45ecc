package meter

import (
	"errors"
	"fmt"
)

// MaxFunctionLocals is the most locals CheckBounds lets one function
// declare: V8's limit (kV8MaxWasmFunctionLocals), so a module Envoy runs
// passes.
const MaxFunctionLocals = 50000

// ErrBounds is wrapped by CheckBounds' error.
var ErrBounds = errors.New("a count or size in the module exceeds what its bytes can hold")

// CheckBounds refuses a module whose declared counts and sizes could make
// a decoder allocate more than the module's bytes can justify. wazero's
// decoder (v1.12) sizes its slices by the counts a module declares before
// it reads the elements: an 18-byte module declaring 0x88888888 imports
// makes it allocate tens of GiB, and Go ends the whole process ("fatal
// error: out of memory", not a recoverable panic). So every vector count
// in the sections wazero decodes is held to the bytes left for it (every
// element takes at least one byte), every name, body and data segment
// size to the bytes left, and a function's locals (run-length encoded, so
// not bounded by bytes) to MaxFunctionLocals. Call it before handing
// bytes to the runtime. It is not a validator: a module it passes may
// still be malformed, and the runtime says so.
func CheckBounds(wasm []byte) error {
	secs, err := sections(wasm)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBounds, err)
	}
	m := &module{}
	for _, s := range secs {
		if err := m.checkSection(s); err != nil {
			return fmt.Errorf("%w: section %d: %w", ErrBounds, s.id, err)
		}
	}
	return nil
}

func (m *module) checkSection(s section) error {
	p := s.payload
	switch s.id {
	case secType:
		return checkTypes(p)
	case secImport:
		return m.countImports(p) // names read with their bounds
	case secFunction, secTable, secMemory:
		_, _, err := boundedVector(p)
		return err
	case secGlobal:
		_, err := m.rewriteGlobals(p)
		return err
	case secExport:
		_, err := m.rewriteExports(p)
		return err
	case secElement:
		_, err := m.rewriteElements(p)
		return err
	case secCode:
		return checkCode(p)
	case secData:
		return m.checkData(p)
	case secCustom:
		r := &reader{b: p}
		name, err := r.name()
		if err != nil || name != "name" {
			return err
		}
		_, err = m.rewriteNames(r, nil)
		return err
	}
	return nil
}

// boundedVector reads a vector's count and holds it to the bytes after it;
// it returns the reader past the count, and the count.
func boundedVector(p []byte) (*reader, uint32, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, 0, err
	}
	if int64(n) > int64(len(p)-r.pos) {
		return nil, 0, fmt.Errorf("vector of %d elements in %d bytes", n, len(p)-r.pos)
	}
	return r, n, nil
}

// checkTypes walks the function types: 0x60, parameter and result
// vectors of value types (one byte each, or a reference type and its heap
// type).
func checkTypes(p []byte) error {
	r, n, err := boundedVector(p)
	if err != nil {
		return err
	}
	for range n {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("type form %#x: %w", form, ErrUnsupported)
		}
		for range 2 { // params, results
			k, err := r.u32()
			if err != nil {
				return err
			}
			if int64(k) > int64(len(p)-r.pos) {
				return fmt.Errorf("%d value types in %d bytes", k, len(p)-r.pos)
			}
			for range k {
				if err := r.valType(); err != nil {
					return err
				}
			}
		}
	}
	return r.end()
}

// checkCode holds every body's size to the bytes left and its locals to
// MaxFunctionLocals.
func checkCode(p []byte) error {
	r, n, err := boundedVector(p)
	if err != nil {
		return err
	}
	for i := range n {
		body, err := r.sized()
		if err != nil {
			return fmt.Errorf("body %d: %w", i, err)
		}
		br := &reader{b: body}
		decls, err := br.u32()
		if err != nil {
			return err
		}
		if int64(decls) > int64(len(body)) {
			return fmt.Errorf("body %d: %d local declarations in %d bytes", i, decls, len(body))
		}
		var locals uint64
		for range decls {
			c, err := br.u32()
			if err != nil {
				return err
			}
			if locals += uint64(c); locals > MaxFunctionLocals {
				return fmt.Errorf("body %d: more than %d locals", i, MaxFunctionLocals)
			}
			if err := br.valType(); err != nil {
				return err
			}
		}
	}
	return r.end()
}

// checkData walks the data segments: active (memory 0 or explicit) or
// passive, each with its bytes.
func (m *module) checkData(p []byte) error {
	r, n, err := boundedVector(p)
	if err != nil {
		return err
	}
	for i := range n {
		flag, err := r.u32()
		if err != nil {
			return err
		}
		switch flag {
		case 0: // active, memory 0: offset expression
			_, err = m.expr(r, nil, false)
		case 1: // passive
		case 2: // active: memory index, offset expression
			if _, err = r.u32(); err == nil {
				_, err = m.expr(r, nil, false)
			}
		default:
			return fmt.Errorf("data segment %d: flag %d", i, flag)
		}
		if err != nil {
			return fmt.Errorf("data segment %d: %w", i, err)
		}
		if _, err := r.sized(); err != nil {
			return fmt.Errorf("data segment %d bytes: %w", i, err)
		}
	}
	return r.end()
}

// valType skips a value type: one byte, or a reference type (ref null ht),
// (ref ht) and its heap type.
func (r *reader) valType() error {
	vt, err := r.byte()
	if err != nil {
		return err
	}
	if vt == 0x63 || vt == 0x64 {
		_, err = r.leb(5)
	}
	return err
}
