package meter

import (
	"errors"
	"testing"
)

// Allocation bombs: a few bytes whose declared counts would make wazero's
// decoder allocate GiBs (the first is the fuzzer's find, which ended the
// test process "out of memory").
var bombs = map[string][]byte{
	"fuzz find": []byte("\x00asm\x01\x00\x00\x00\x02\x00\x88\x88\x88\x88\x02\x04c0"),
	// import section: 0xffffffff imports in 5 bytes.
	"imports": {0, 'a', 's', 'm', 1, 0, 0, 0, secImport, 5, 0xff, 0xff, 0xff, 0xff, 0x0f},
	// type () -> (); one function; its body declares 0xffffffff i32 locals.
	"locals": {0, 'a', 's', 'm', 1, 0, 0, 0,
		secType, 4, 1, 0x60, 0, 0,
		secFunction, 2, 1, 0,
		secCode, 10, 1, 8, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b},
	// one memory; a passive data segment declaring 256 MiB of bytes it lacks.
	"data": {0, 'a', 's', 'm', 1, 0, 0, 0,
		secMemory, 3, 1, 0, 1,
		secData, 6, 1, 1, 0x80, 0x80, 0x80, 0x01},
	// a function type with 0xffffffff parameters.
	"params": {0, 'a', 's', 'm', 1, 0, 0, 0, secType, 8, 1, 0x60, 0xff, 0xff, 0xff, 0xff, 0x0f, 0},
	// an export named by 0xffffffff bytes.
	"export name": {0, 'a', 's', 'm', 1, 0, 0, 0, secExport, 6, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	// a name section mapping 0xffffffff functions.
	"name section": {0, 'a', 's', 'm', 1, 0, 0, 0, secCustom, 12, 4, 'n', 'a', 'm', 'e', 1, 6, 0xff, 0xff, 0xff, 0xff, 0x0f},
}

func TestCheckBounds(t *testing.T) {
	for name, wasm := range bombs {
		if err := CheckBounds(wasm); !errors.Is(err, ErrBounds) {
			t.Errorf("%s: CheckBounds = %v, want ErrBounds", name, err)
		}
	}
	g := &gen{in: []byte{3, 5, 1, 6, 7, 8, 14, 15, 16}}
	generated, _ := g.module()
	metered, err := Instrument(loopModule)
	if err != nil {
		t.Fatal(err)
	}
	for name, wasm := range map[string][]byte{"loop": loopModule, "generated": generated, "instrumented": metered} {
		if err := CheckBounds(wasm); err != nil {
			t.Errorf("%s: a well-formed module refused: %v", name, err)
		}
	}
}
