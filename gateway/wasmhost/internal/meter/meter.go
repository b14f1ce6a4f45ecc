// Package meter instruments a WebAssembly module so that a running call can
// be stopped without the runtime's own termination checks: it adds a mutable
// i32 global (the countdown) and an imported host function, and at every
// loop header it inserts
//
//	global.get $countdown
//	i32.const 1
//	i32.sub
//	global.set $countdown
//	global.get $countdown
//	i32.const 0
//	i32.le_s
//	if
//	  call $check        ;; ImportModule.ImportName: () -> i32
//	  global.set $countdown
//	end
//
// so the host is called once every N loop iterations (N is what check
// returns; the countdown starts at 0, so the first loop header calls it). The
// check either returns the next N or stops the call (a Go host function
// panics, and the runtime unwinds the guest). A countdown that is zero or
// negative calls check at every loop header, so a call that went on after a
// stopped nested call (a host function that called back into the guest)
// meets the check again at once.
//
// Adding an import shifts the index of every function the module defines by
// one: calls, ref.func, exports, the start function, element segments, global
// initialisers and the function and local names of the "name" section are
// remapped. DWARF sections (".debug_*") are dropped: their code offsets no
// longer hold.
//
// The instruction walker knows the MVP, sign extension, non-trapping
// float-to-int conversion, bulk memory and reference types (typed select,
// ref.*, table.*) and multi-value block types. It refuses anything else
// (SIMD, threads, tail calls, exceptions, GC, multi-memory, memory64) with
// an error wrapping ErrUnsupported: a module it cannot bound is not run.
package meter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ImportModule and ImportName name the host function the instrumented
// module imports, of type () -> i32.
const (
	ImportModule = "meshwarden_internal"
	ImportName   = "deadline_check"
)

// ErrUnsupported is wrapped by the error for a module that uses an
// instruction or construct the walker does not know.
var ErrUnsupported = errors.New("unsupported by the deadline instrumentation")

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// order is the position of each known section in a module.
var order = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secGlobal: 6,
	secExport: 7, secStart: 8, secElement: 9, secDataCount: 10, secCode: 11, secData: 12,
}

type section struct {
	id      byte
	payload []byte
}

// Instrument returns a copy of wasm with a countdown at every loop header
// (see the package documentation). The input is not modified. It does not
// validate the module beyond what it needs to parse; compile the result with
// the runtime, which does.
func Instrument(wasm []byte) ([]byte, error) {
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}
	m := &module{}
	// First pass: counts the rewrite needs.
	for _, s := range secs {
		switch s.id {
		case secType:
			if m.nTypes, err = vecLen(s.payload); err != nil {
				return nil, fmt.Errorf("type section: %w", err)
			}
		case secImport:
			if err := m.countImports(s.payload); err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
		case secGlobal:
			if m.nGlobals, err = vecLen(s.payload); err != nil {
				return nil, fmt.Errorf("global section: %w", err)
			}
		}
	}
	m.checkType = m.nTypes
	m.checkFunc = m.nImportFuncs
	m.counter = m.nImportGlobals + m.nGlobals
	var out []section
	have := map[byte]bool{}
	for _, s := range secs {
		have[s.id] = true
	}
	// add inserts a new section before the first known section that comes
	// after it, keeping custom sections where they were.
	add := func(id byte, payload []byte) {
		for i, s := range out {
			if s.id != secCustom && order[s.id] > order[id] {
				out = append(out[:i], append([]section{{id, payload}}, out[i:]...)...)
				return
			}
		}
		out = append(out, section{id, payload})
	}
	for _, s := range secs {
		p, keep, err := m.rewrite(s)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, section{s.id, p})
		}
	}
	if !have[secType] {
		add(secType, m.rewriteType(nil))
	}
	if !have[secImport] {
		add(secImport, m.rewriteImport(nil))
	}
	if !have[secGlobal] {
		p, _ := m.rewriteGlobals(nil)
		add(secGlobal, p)
	}
	b := append([]byte(nil), wasm[:8]...)
	for _, s := range out {
		b = append(b, s.id)
		b = binary.AppendUvarint(b, uint64(len(s.payload)))
		b = append(b, s.payload...)
	}
	return b, nil
}

// module holds the counts and the new indices of one Instrument.
type module struct {
	nTypes, nImports, nImportFuncs, nImportGlobals, nGlobals uint32
	checkType, checkFunc, counter                            uint32
}

// fn maps an old function index to the new one.
func (m *module) fn(i uint32) uint32 {
	if i >= m.checkFunc {
		return i + 1
	}
	return i
}

func sections(wasm []byte) ([]section, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, errors.New("not a WebAssembly 1.0 binary module (magic and version)")
	}
	r := &reader{b: wasm, pos: 8}
	var secs []section
	last := 0
	for r.pos < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d size: %w", id, err)
		}
		p, err := r.bytes(int(n))
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if id != secCustom {
			o, ok := order[id]
			if !ok {
				return nil, fmt.Errorf("section id %d: %w", id, ErrUnsupported)
			}
			if o <= last {
				return nil, fmt.Errorf("section %d out of order or repeated", id)
			}
			last = o
		}
		secs = append(secs, section{id, p})
	}
	return secs, nil
}

func vecLen(p []byte) (uint32, error) {
	r := &reader{b: p}
	return r.u32()
}

// rewrite returns a section's new payload, or keep=false to drop it.
func (m *module) rewrite(s section) (p []byte, keep bool, err error) {
	switch s.id {
	case secType:
		return m.rewriteType(s.payload), true, nil
	case secImport:
		return m.rewriteImport(s.payload), true, nil
	case secGlobal:
		p, err = m.rewriteGlobals(s.payload)
	case secExport:
		p, err = m.rewriteExports(s.payload)
	case secStart:
		r := &reader{b: s.payload}
		var i uint32
		if i, err = r.u32(); err == nil {
			p = binary.AppendUvarint(nil, uint64(m.fn(i)))
			err = r.end()
		}
	case secElement:
		p, err = m.rewriteElements(s.payload)
	case secCode:
		p, err = m.rewriteCode(s.payload)
	case secCustom:
		return m.rewriteCustom(s.payload)
	default:
		return s.payload, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("section %d: %w", s.id, err)
	}
	return p, true, nil
}

// rewriteType appends the check's type () -> i32 to a type section payload
// (nil: none yet).
func (m *module) rewriteType(p []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(m.nTypes+1))
	if p != nil {
		r := &reader{b: p}
		_, _ = r.u32()
		b = append(b, p[r.pos:]...)
	}
	return append(b, 0x60, 0x00, 0x01, 0x7f)
}

// rewriteImport appends the check's import to an import section payload.
func (m *module) rewriteImport(p []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(m.nImports+1))
	if p != nil {
		r := &reader{b: p}
		_, _ = r.u32()
		b = append(b, p[r.pos:]...)
	}
	b = appendName(b, ImportModule)
	b = appendName(b, ImportName)
	b = append(b, 0x00)
	return binary.AppendUvarint(b, uint64(m.checkType))
}

func appendName(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
