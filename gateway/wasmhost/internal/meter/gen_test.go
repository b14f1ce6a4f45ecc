package meter

import (
	"encoding/binary"
)

// gen builds a small valid module from fuzz bytes, to compare a module with
// its instrumented copy. The module imports env.f: (i32) -> i32 (so the
// defined functions' indices shift), defines nFuncs functions (i32) -> i32
// built from random operations, a table holding every function, a mutable
// global, a memory, a start function and a name section, and exports every
// function as "fN".
//
// Every operation takes the accumulator (one i32) and leaves one; loops are
// counted, calls only go to lower indices, so every function ends.
type gen struct {
	in  []byte
	pos int
}

func (g *gen) next() byte {
	if g.pos >= len(g.in) {
		return 0
	}
	c := g.in[g.pos]
	g.pos++
	return c
}

const (
	typeFn    = 0 // (i32) -> i32
	typeStart = 1 // () -> ()
	// locals: 0 is the argument; 1..4 temporaries; 5.. loop counters.
	localTmp   = 1
	localCount = 5
	maxDepth   = 3
)

func uleb(b []byte, v uint32) []byte { return binary.AppendUvarint(b, uint64(v)) }

func sleb(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// ops appends a sequence of operations on the accumulator for function
// self (its index in the function space).
func (g *gen) ops(b []byte, self uint32, depth int, budget *int) []byte {
	n := int(g.next()%6) + 1
	for range n {
		if *budget <= 0 {
			return b
		}
		*budget--
		switch op := g.next() % 19; op {
		case 0: // add a constant
			b = append(b, 0x41)
			b = sleb(b, int32(g.next())-100)
			b = append(b, 0x6a)
		case 1: // multiply
			b = append(b, 0x41)
			b = sleb(b, int32(g.next()|1))
			b = append(b, 0x6c)
		case 2: // xor with a large constant (multi-byte LEB)
			b = append(b, 0x41)
			b = sleb(b, int32(g.next())<<20|0x5a5a)
			b = append(b, 0x73)
		case 3: // call a lower function (or the import)
			if self > 0 {
				b = append(b, 0x10)
				b = uleb(b, uint32(g.next())%self)
			}
		case 4: // call_indirect through the table
			if self > 0 {
				b = append(b, 0x41)
				b = sleb(b, int32(uint32(g.next())%self))
				b = append(b, 0x11, typeFn, 0x00)
			}
		case 5: // counted loop
			if depth < maxDepth {
				cnt := uint32(localCount + depth)
				b = append(b, 0x21, localTmp+byte(depth)) // local.set tmp
				b = append(b, 0x41)
				b = sleb(b, int32(g.next()%9)+1)
				b = append(b, 0x21)
				b = uleb(b, cnt)
				b = append(b, 0x03, 0x40) // loop
				b = append(b, 0x20, localTmp+byte(depth))
				b = g.ops(b, self, depth+1, budget)
				b = append(b, 0x21, localTmp+byte(depth))
				b = append(b, 0x20)
				b = uleb(b, cnt)
				b = append(b, 0x41, 0x01, 0x6b, 0x22) // i32.const 1; i32.sub; local.tee
				b = uleb(b, cnt)
				b = append(b, 0x0d, 0x00, 0x0b) // br_if 0; end
				b = append(b, 0x20, localTmp+byte(depth))
			}
		case 18: // counted loop closed by br_table (0 exits the block, else back to the loop)
			if depth < maxDepth {
				cnt := uint32(localCount + depth)
				b = append(b, 0x21, localTmp+byte(depth), 0x41)
				b = sleb(b, int32(g.next()%5)+1)
				b = append(b, 0x21)
				b = uleb(b, cnt)
				b = append(b, 0x02, 0x40, 0x03, 0x40, 0x20, localTmp+byte(depth)) // block; loop
				b = g.ops(b, self, depth+2, budget)
				b = append(b, 0x21, localTmp+byte(depth), 0x20)
				b = uleb(b, cnt)
				b = append(b, 0x41, 0x01, 0x6b, 0x22)
				b = uleb(b, cnt)
				b = append(b, 0x0e, 0x01, 0x01, 0x00, 0x0b, 0x0b) // br_table [1] 0; end; end
				b = append(b, 0x20, localTmp+byte(depth))
			}
		case 6: // loop with a parameter and a result (type index block type), run once
			if depth < maxDepth {
				b = append(b, 0x03, typeFn)
				b = g.ops(b, self, depth+1, budget)
				b = append(b, 0x0b)
			}
		case 7: // block with a parameter, a result and an early exit
			if depth < maxDepth {
				b = append(b, 0x02, typeFn)
				b = g.ops(b, self, depth+1, budget)
				b = append(b, 0x22, localTmp+byte(depth), 0x20, localTmp+byte(depth), 0x0d, 0x00) // tee; get; br_if 0
				b = append(b, 0x41, 0x07, 0x6a, 0x0b)
			}
		case 8: // if/else on the low bit
			if depth < maxDepth {
				t := localTmp + byte(depth)
				b = append(b, 0x21, t, 0x20, t, 0x41, 0x01, 0x71, 0x04, 0x7f, 0x20, t)
				b = g.ops(b, self, depth+1, budget)
				b = append(b, 0x05, 0x20, t)
				b = g.ops(b, self, depth+1, budget)
				b = append(b, 0x0b)
			}
		case 9: // sign extension
			b = append(b, 0xc0+g.next()%2)
		case 10: // saturating truncation of a float
			b = append(b, 0xb2, 0x43, 0, 0, 0x80, 0x3f, 0x94, 0xfc, 0x00) // f32.convert_i32_s; f32.const 1; f32.mul; i32.trunc_sat_f32_s
		case 11: // store and load
			b = append(b, 0x21, localTmp, 0x41)
			b = sleb(b, int32(g.next())*4)
			b = append(b, 0x20, localTmp, 0x36, 0x02, 0x00, 0x41)
			b = sleb(b, int32(g.pos%64)*4)
			b = append(b, 0x28, 0x02, 0x00)
		case 12: // typed select
			b = append(b, 0x22, localTmp, 0x41)
			b = sleb(b, int32(g.next()))
			b = append(b, 0x20, localTmp, 0x1c, 0x01, 0x7f)
		case 13: // the mutable global
			b = append(b, 0x23, 0x00, 0x6a, 0x22, localTmp, 0x24, 0x00, 0x20, localTmp)
		case 14: // br_table
			if depth < maxDepth {
				t := localTmp + byte(depth)
				b = append(b, 0x21, t, 0x02, 0x40, 0x02, 0x40, 0x20, t, 0x41, 0x03, 0x71)
				b = append(b, 0x0e, 0x02, 0x00, 0x01, 0x00, 0x0b, 0x20, t, 0x41, 0x05, 0x6a, 0x21, t, 0x0b, 0x20, t)
			}
		case 15: // ref.func of a function, which is never null
			b = append(b, 0xd2)
			b = uleb(b, uint32(g.next())%(self+1))
			b = append(b, 0xd1, 0x6a)
		case 16: // bulk memory: fill then load
			b = append(b, 0x21, localTmp, 0x41, 0x10, 0x20, localTmp, 0x41, 0x08, 0xfc, 0x0b, 0x00, 0x41, 0x10, 0x28, 0x02, 0x00)
		case 17: // memory.size
			b = append(b, 0x3f, 0x00, 0x6a)
		}
	}
	return b
}

func appendSection(b []byte, id byte, payload []byte) []byte {
	b = append(b, id)
	b = uleb(b, uint32(len(payload)))
	return append(b, payload...)
}

func appendStr(b []byte, s string) []byte {
	b = uleb(b, uint32(len(s)))
	return append(b, s...)
}

// module returns the generated module and its number of defined (i32) ->
// i32 functions; their exports are "f0", "f1", ….
func (g *gen) module() ([]byte, int) {
	nFuncs := int(g.next()%5) + 1
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = appendSection(b, secType, []byte{2, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 0, 0})
	imp := uleb(nil, 1)
	imp = appendStr(imp, "env")
	imp = appendStr(imp, "f")
	imp = append(imp, 0x00, typeFn)
	b = appendSection(b, secImport, imp)
	fns := uleb(nil, uint32(nFuncs+1))
	for range nFuncs {
		fns = append(fns, typeFn)
	}
	fns = append(fns, typeStart)
	b = appendSection(b, secFunction, fns)
	total := uint32(nFuncs + 2) // import, defined, start
	b = appendSection(b, secTable, append([]byte{1, 0x70, 0x00}, uleb(nil, total)...))
	b = appendSection(b, secMemory, []byte{1, 0x00, 0x01})
	b = appendSection(b, secGlobal, []byte{1, 0x7f, 0x01, 0x41, 0x03, 0x0b})
	exp := uleb(nil, uint32(nFuncs))
	for i := range nFuncs {
		exp = appendStr(exp, "f"+string(rune('0'+i)))
		exp = append(exp, 0x00)
		exp = uleb(exp, uint32(i+1))
	}
	b = appendSection(b, secExport, exp)
	b = appendSection(b, secStart, uleb(nil, total-1))
	// Active segment form 0 (function indices) for the table, and a
	// declarative form 7 (expressions) naming the start function.
	el := []byte{2, 0x00, 0x41, 0x00, 0x0b}
	el = uleb(el, total)
	for i := range total {
		el = uleb(el, i)
	}
	el = append(el, 0x07, 0x70, 0x01, 0xd2)
	el = uleb(el, total-1)
	el = append(el, 0x0b)
	b = appendSection(b, secElement, el)
	code := uleb(nil, uint32(nFuncs+1))
	for i := range nFuncs {
		budget := 40
		body := []byte{2, 4, 0x7f, maxDepth, 0x7f, 0x20, 0x00} // locals: 4 tmp + counters; local.get 0
		body = g.ops(body, uint32(i+1), 0, &budget)
		body = append(body, 0x0b)
		code = uleb(code, uint32(len(body)))
		code = append(code, body...)
	}
	// start: global 0 += a counted loop's worth.
	start := []byte{1, 1, 0x7f, 0x41, 0x05, 0x21, 0x00, 0x03, 0x40, 0x23, 0x00, 0x41, 0x02, 0x6a, 0x24, 0x00,
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x0b}
	code = uleb(code, uint32(len(start)))
	code = append(code, start...)
	b = appendSection(b, secCode, code)
	b = appendSection(b, secData, []byte{1, 0x00, 0x41, 0x20, 0x0b, 0x03, 'a', 'b', 'c'})
	// name section: function names.
	names := uleb(nil, total)
	names = appendStr(uleb(names, 0), "imported")
	for i := range total - 1 {
		names = appendStr(uleb(names, i+1), "fn"+string(rune('a'+i)))
	}
	sub := append([]byte{1}, uleb(nil, uint32(len(names)))...)
	sub = append(sub, names...)
	b = appendSection(b, secCustom, append(appendStr(nil, "name"), sub...))
	return b, nFuncs
}
