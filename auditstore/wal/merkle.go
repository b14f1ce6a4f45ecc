package wal

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Frontier is the right edge of an RFC 6962 Merkle tree over records: one
// hash per complete subtree, largest first (one per set bit of the size).
// It is all an appender needs to compute the tree hash after every record,
// and it agrees with [tlog.TreeHash]. The leaf of record seq s is
// tlog.RecordHash(payload of s), at tlog index s-1.
type Frontier struct {
	Size   uint64
	Hashes []tlog.Hash
}

// Add appends the leaf hash of the next record.
func (f *Frontier) Add(leaf tlog.Hash) {
	f.Size++
	f.Hashes = append(f.Hashes, leaf)
	for k := f.Size; k&1 == 0 && len(f.Hashes) > 1; k >>= 1 {
		n := len(f.Hashes)
		f.Hashes[n-2] = tlog.NodeHash(f.Hashes[n-2], f.Hashes[n-1])
		f.Hashes = f.Hashes[:n-1]
	}
}

// Root is the tree hash over the Size records (the zero hash for none).
func (f *Frontier) Root() tlog.Hash {
	if len(f.Hashes) == 0 {
		return tlog.Hash{}
	}
	h := f.Hashes[len(f.Hashes)-1]
	for i := len(f.Hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.Hashes[i], h)
	}
	return h
}

// Clone returns an independent copy.
func (f *Frontier) Clone() Frontier {
	return Frontier{Size: f.Size, Hashes: append([]tlog.Hash(nil), f.Hashes...)}
}

// EncodeFrontier renders f's hashes as hex strings (for a checkpoint line).
func (f *Frontier) encode() []string {
	out := make([]string, len(f.Hashes))
	for i, h := range f.Hashes {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

// FrontierAt rebuilds the frontier stored with c (size c.Seq) and checks it
// against c's signed Merkle root, so a frontier read from disk is trusted
// only as far as the signature.
func FrontierAt(c Checkpoint) (Frontier, error) {
	f := Frontier{Size: c.Seq}
	for _, s := range c.Frontier {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return Frontier{}, fmt.Errorf("checkpoint at seq %d: frontier hash %q is not %d hex bytes", c.Seq, s, tlog.HashSize)
		}
		var h tlog.Hash
		copy(h[:], b)
		f.Hashes = append(f.Hashes, h)
	}
	if bitsSet(c.Seq) != len(f.Hashes) {
		return Frontier{}, fmt.Errorf("checkpoint at seq %d: frontier has %d hashes, a tree of that size has %d", c.Seq, len(f.Hashes), bitsSet(c.Seq))
	}
	if c.Root == "" || f.Root().String() != c.Root {
		return Frontier{}, fmt.Errorf("checkpoint at seq %d: its frontier does not hash to its signed Merkle root", c.Seq)
	}
	return f, nil
}

func bitsSet(n uint64) int {
	c := 0
	for ; n != 0; n &= n - 1 {
		c++
	}
	return c
}

// NoteKeyName is the signer name (and checkpoint origin) used in signed notes.
const NoteKeyName = "meshwarden-audit"

type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// NoteVerifierKey is the C2SP verifier key ("<name>+<hash>+<key>") of pub,
// the form tools built on golang.org/x/mod/sumdb/note accept.
func NoteVerifierKey(pub ed25519.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(NoteKeyName, pub)
}

// NewNoteSigner turns the collector's Ed25519 key into a signed-note signer.
func NewNoteSigner(key ed25519.PrivateKey) (note.Signer, error) {
	vkey, err := NoteVerifierKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("note signer: %w", err)
	}
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("note signer: unexpected verifier key form %q", vkey)
	}
	h, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("note signer: %w", err)
	}
	return &noteSigner{name: NoteKeyName, hash: uint32(h), key: key}, nil
}

// NewNoteVerifier is the verifier matching [NewNoteSigner].
func NewNoteVerifier(pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := NoteVerifierKey(pub)
	if err != nil {
		return nil, err
	}
	return note.NewVerifier(vkey)
}

// NoteText is the C2SP checkpoint body of c: origin, tree size, base64 tree
// hash, then one extension line binding the hash chain head, the time and
// (for a retention statement) the first retained seq.
func (c *Checkpoint) NoteText(origin string) (string, error) {
	root, err := tlog.ParseHash(c.Root)
	if err != nil {
		return "", fmt.Errorf("checkpoint at seq %d: merkle root: %w", c.Seq, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", origin, c.Seq, root.String())
	fmt.Fprintf(&b, "meshwarden-chain %s %d", c.Hash, c.Time)
	if c.Start > 0 {
		fmt.Fprintf(&b, " start %d", c.Start)
	}
	b.WriteString("\n")
	return b.String(), nil
}

// OpenNote checks c.Note's signature with v and that its body states exactly
// c's seq, Merkle root, chain head, time and start.
func (c *Checkpoint) OpenNote(v note.Verifier) error {
	n, err := note.Open([]byte(c.Note), note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("checkpoint at seq %d: signed note does not verify with this public key (%v): the checkpoint was forged or altered, or the key is wrong", c.Seq, err)
	}
	want, err := c.NoteText(NoteKeyName)
	if err != nil {
		return err
	}
	if n.Text != want {
		return fmt.Errorf("checkpoint at seq %d: the signed note states something else than the checkpoint line (%q): the line was altered", c.Seq, firstLines(n.Text))
	}
	return nil
}

func firstLines(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ") }

// signNote fills Note.
func (c *Checkpoint) signNote(s note.Signer) error {
	text, err := c.NoteText(NoteKeyName)
	if err != nil {
		return err
	}
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return fmt.Errorf("sign checkpoint note: %w", err)
	}
	c.Note = string(msg)
	return nil
}
