package meter

import (
	"encoding/binary"
	"fmt"
)

// expr copies one expression (instructions up to the end that closes it)
// from r to b: function indices of call and ref.func remapped and, in a
// function body, the countdown inserted after every loop header.
func (m *module) expr(r *reader, b []byte, body bool) ([]byte, error) {
	depth := 0
	for {
		at := r.pos
		op, err := r.byte()
		if err != nil {
			return nil, err
		}
		switch {
		case op == 0x00 || op == 0x01 || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1 ||
			(op >= 0x45 && op <= 0xc4):
			// unreachable, nop, return, drop, select, ref.is_null, numeric
			// and sign extension: no immediate.
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
			if err := r.blockType(); err != nil {
				return nil, err
			}
			depth++
			if op == 0x03 && body {
				b = append(b, r.b[at:r.pos]...)
				b = m.countdown(b)
				continue
			}
		case op == 0x05: // else
		case op == 0x0b: // end
			if depth == 0 {
				return append(b, op), nil
			}
			depth--
		case op == 0x0c || op == 0x0d: // br, br_if
			_, err = r.u32()
		case op == 0x0e: // br_table
			var n uint32
			if n, err = r.u32(); err == nil {
				for i := uint32(0); i <= n && err == nil; i++ {
					_, err = r.u32()
				}
			}
		case op == 0x10 || op == 0xd2: // call, ref.func
			var i uint32
			if i, err = r.u32(); err != nil {
				return nil, err
			}
			b = append(b, op)
			b = binary.AppendUvarint(b, uint64(m.fn(i)))
			continue
		case op == 0x11: // call_indirect: type, table
			if _, err = r.u32(); err == nil {
				_, err = r.u32()
			}
		case op == 0x1c: // select t*
			var n uint32
			if n, err = r.u32(); err == nil {
				_, err = r.bytes(int(n))
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			_, err = r.u32()
		case op >= 0x28 && op <= 0x3e: // loads, stores: memarg
			err = r.memarg()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			err = r.zero()
		case op == 0x41:
			_, err = r.leb(5)
		case op == 0x42:
			_, err = r.leb(10)
		case op == 0x43:
			_, err = r.bytes(4)
		case op == 0x44:
			_, err = r.bytes(8)
		case op == 0xd0: // ref.null t
			_, err = r.byte()
		case op == 0xfc:
			err = r.misc()
		default:
			return nil, fmt.Errorf("opcode %#x at byte %d of the expression: %w", op, at, ErrUnsupported)
		}
		if err != nil {
			return nil, err
		}
		b = append(b, r.b[at:r.pos]...)
	}
}

// countdown appends the loop header's countdown (package documentation).
func (m *module) countdown(b []byte) []byte {
	g := func(op byte) {
		b = append(b, op)
		b = binary.AppendUvarint(b, uint64(m.counter))
	}
	g(0x23)                      // global.get
	b = append(b, 0x41, 1, 0x6b) // i32.const 1; i32.sub
	g(0x24)                      // global.set
	g(0x23)                      // global.get
	b = append(b, 0x41, 0, 0x4c) // i32.const 0; i32.le_s
	b = append(b, 0x04, 0x40)    // if (no result)
	b = append(b, 0x10)          // call check
	b = binary.AppendUvarint(b, uint64(m.checkFunc))
	g(0x24)                // global.set
	return append(b, 0x0b) // end
}

// misc reads the immediates of a 0xfc instruction.
func (r *reader) misc() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	n := 0 // u32 immediates
	switch {
	case sub <= 7: // saturating truncations
	case sub == 9 || sub == 11 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
		// data.drop, memory.fill, elem.drop, table.grow, table.size, table.fill
		n = 1
	case sub == 8 || sub == 10 || sub == 12 || sub == 14:
		// memory.init, memory.copy, table.init, table.copy
		n = 2
	default:
		return fmt.Errorf("opcode 0xfc %d: %w", sub, ErrUnsupported)
	}
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}
