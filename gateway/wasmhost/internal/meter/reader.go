package meter

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// reader reads the binary format: bytes, LEB128 integers and names, never
// past its end.
type reader struct {
	b   []byte
	pos int
}

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.pos {
		return nil, errTruncated
	}
	p := r.b[r.pos : r.pos+n]
	r.pos += n
	return p, nil
}

// leb skips a LEB128 integer of at most max bytes and returns its value's
// low 64 bits (unsigned reading).
func (r *reader) leb(max int) (uint64, error) {
	var v uint64
	for i := 0; i < max; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("LEB128 integer too long")
}

func (r *reader) u32() (uint32, error) {
	v, err := r.leb(5)
	if err != nil {
		return 0, err
	}
	if v > 0xffffffff {
		return 0, errors.New("u32 out of range")
	}
	return uint32(v), nil
}

// sized reads a u32 size and that many bytes.
func (r *reader) sized() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	return r.bytes(int(n))
}

func (r *reader) name() (string, error) {
	p, err := r.sized()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(p) {
		return "", errors.New("name is not UTF-8")
	}
	return string(p), nil
}

// end reports an error unless every byte was read.
func (r *reader) end() error {
	if r.pos != len(r.b) {
		return fmt.Errorf("%d unexpected bytes at the end", len(r.b)-r.pos)
	}
	return nil
}

// limits reads table or memory limits: flags 0 (min) or 1 (min, max);
// shared memories (flags 2, 3) and memory64 are refused.
func (r *reader) limits() error {
	f, err := r.byte()
	if err != nil {
		return err
	}
	if f > 1 {
		return fmt.Errorf("limits flags %#x: %w", f, ErrUnsupported)
	}
	for range int(f) + 1 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// blockType reads a block type: empty (0x40), one value type, or a type
// index (s33, non-negative).
func (r *reader) blockType() error {
	if r.pos >= len(r.b) {
		return errTruncated
	}
	switch r.b[r.pos] {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.pos++
		return nil
	}
	if r.b[r.pos]&0xc0 == 0x40 { // a one-byte negative s33: not a type index
		return fmt.Errorf("block type %#x: %w", r.b[r.pos], ErrUnsupported)
	}
	_, err := r.leb(5)
	return err
}

// memarg reads alignment and offset; an alignment with bit 6 set (a memory
// index, multi-memory) is refused.
func (r *reader) memarg() error {
	a, err := r.u32()
	if err != nil {
		return err
	}
	if a >= 64 {
		return fmt.Errorf("memarg alignment %d (multi-memory): %w", a, ErrUnsupported)
	}
	_, err = r.u32()
	return err
}

// zero reads the memory index of memory.size and memory.grow, which must be
// 0 (the only memory).
func (r *reader) zero() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c != 0 {
		return fmt.Errorf("memory index %d: %w", c, ErrUnsupported)
	}
	return nil
}
