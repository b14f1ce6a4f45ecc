package wal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/maphash"
	"io"

	"golang.org/x/mod/sumdb/tlog"
)

// idWindow remembers the last n event ids and their seqs (FIFO eviction).
// Ids are kept as 128-bit keys from two independently seeded maphash
// functions (seeds random per window, so nobody outside the process can aim
// for a collision, and an accidental one among a quarter million ids is
// about 2^-92 likely): fixed-size keys hold no pointers for the garbage
// collector to scan, and hashing a short id costs nanoseconds.
type idWindow struct {
	s1, s2 maphash.Seed
	seqs   map[idKey]uint64
	ring   []idKey
	used   int
	next   int
}

type idKey [2]uint64

func newIDWindow(n int) *idWindow {
	return &idWindow{s1: maphash.MakeSeed(), s2: maphash.MakeSeed(),
		seqs: make(map[idKey]uint64, min(n, 1<<16)), ring: make([]idKey, n)}
}

// key is id's key. It only reads the seeds, so any goroutine may call it.
func (w *idWindow) key(id string) idKey {
	return idKey{maphash.String(w.s1, id), maphash.String(w.s2, id)}
}

// lookup returns id's key and, if the id is in the window, its seq.
func (w *idWindow) lookup(id string) (idKey, uint64, bool) {
	k := w.key(id)
	s, ok := w.seqs[k]
	return k, s, ok
}

// insert adds a key that lookup just reported absent.
func (w *idWindow) insert(k idKey, seq uint64) {
	if w.used == len(w.ring) {
		delete(w.seqs, w.ring[w.next])
	} else {
		w.used++
	}
	w.ring[w.next] = k
	w.next = (w.next + 1) % len(w.ring)
	w.seqs[k] = seq
}

func (w *idWindow) put(id string, seq uint64) {
	if k, _, ok := w.lookup(id); !ok {
		w.insert(k, seq)
	}
}

// rebuild reads every retained record once at Open: it refills the id
// window and recomputes the Merkle frontier (starting from the frontier
// signed at the first retained record's predecessor after retention).
func (w *WAL) rebuild(ctx context.Context) error {
	if !w.merkle && w.ids == nil {
		return nil
	}
	segs, err := ListSegments(w.opt.Dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 || (len(segs) == 1 && w.head < segs[0].FirstSeq) {
		if w.merkle && len(segs) == 1 && segs[0].FirstSeq > 1 {
			return w.frontierFrom(segs[0].FirstSeq - 1)
		}
		return nil
	}
	if w.merkle && segs[0].FirstSeq > 1 {
		if err := w.frontierFrom(segs[0].FirstSeq - 1); err != nil {
			return err
		}
	}
	n := 0
	for _, s := range segs {
		r, err := OpenSegment(s.Path, 0)
		if err != nil {
			return err
		}
		for {
			if n%4096 == 0 && ctx.Err() != nil {
				r.Close()
				return ctx.Err()
			}
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				r.Close()
				return fmt.Errorf("audit wal: rebuild index from %s offset %d: run `meshwarden audit verify`: %w", s.Name, rec.Offset, err)
			}
			e, ok := decodeMeta(rec.Payload)
			if !ok {
				if e, err = DecodeEvent(rec.Payload); err != nil {
					r.Close()
					return err
				}
			}
			if w.merkle {
				if w.frontier.Size+1 != e.Seq {
					w.opt.Logf("audit wal: record seq %d does not follow the Merkle tree (size %d); Merkle roots are off until the trail is repaired", e.Seq, w.frontier.Size)
					w.merkle, w.nsigner = false, nil
				} else {
					w.frontier.Add(tlog.RecordHash(rec.Payload))
				}
			}
			if w.ids != nil {
				w.ids.put(e.ID, e.Seq)
			}
			n++
		}
		r.Close()
	}
	return nil
}

// frontierFrom starts the Merkle tree at the frontier signed at seq.
func (w *WAL) frontierFrom(seq uint64) error {
	cps, err := ReadCheckpoints(w.opt.Dir)
	if err != nil {
		return err
	}
	var found error = errors.New("no checkpoint")
	for _, c := range cps {
		if c.Seq != seq || c.Root == "" {
			continue
		}
		if w.opt.Signer != nil {
			if err := c.VerifySig(w.opt.Signer.Public().(ed25519.PublicKey)); err != nil {
				found = err
				continue
			}
		}
		f, err := FrontierAt(c)
		if err != nil {
			found = err
			continue
		}
		w.frontier = f
		return nil
	}
	w.opt.Logf("audit wal: no usable Merkle frontier at seq %d (%v); checkpoints carry no Merkle root from now on", seq, found)
	w.merkle, w.nsigner = false, nil
	return nil
}
