package wal

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// CheckpointFile is the name of the append-only checkpoint log in a WAL dir.
const CheckpointFile = "checkpoints.jsonl"

// Checkpoint is a signed statement "the chain had head Hash at Seq at Time".
// One is written every N records / T seconds and at every segment rotation
// (so the first record of every segment is anchored by a checkpoint, and
// retention can delete older segments without breaking verification).
type Checkpoint struct {
	Seq     uint64 `json:"seq"`
	Hash    string `json:"hash"`
	Time    int64  `json:"time"`              // Unix nanoseconds at the collector
	Segment string `json:"segment,omitempty"` // informational, not signed
	// Start, when set, makes this a retention statement: the collector
	// deleted the records before Start by policy, and the trail now starts
	// there. A trail that does not start at seq 1 must start at a signed
	// Start, or verify fails.
	Start uint64 `json:"start,omitempty"`
	Sig   string `json:"sig"` // base64 Ed25519 over SignedBytes
	// Root is the RFC 6962 Merkle tree hash (base64, as tlog prints it) over
	// records 1..Seq; Frontier (hex, unsigned) is the tree's right edge, from
	// which the collector resumes after retention deleted older segments.
	Root     string   `json:"root,omitempty"`
	Frontier []string `json:"frontier,omitempty"`
	// Note is the same statement as a C2SP signed note (tlog checkpoint:
	// origin, size, root, one meshwarden-chain extension line), readable by
	// any tool built on golang.org/x/mod/sumdb/note.
	Note string `json:"note,omitempty"`
}

// SignedBytes is the exact message the signature covers.
func (c *Checkpoint) SignedBytes() []byte {
	b := []byte("meshwarden-audit-checkpoint-v1\n")
	if c.Start > 0 {
		b = []byte("meshwarden-audit-checkpoint-v2\nstart ")
		b = strconv.AppendUint(b, c.Start, 10)
		b = append(b, '\n')
	}
	b = strconv.AppendUint(b, c.Seq, 10)
	b = append(b, '\n')
	b = append(b, c.Hash...)
	b = append(b, '\n')
	return strconv.AppendInt(b, c.Time, 10)
}

// Sign fills Sig.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
}

// VerifySig checks Sig against pub.
func (c *Checkpoint) VerifySig(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil || !ed25519.Verify(pub, c.SignedBytes(), sig) {
		return fmt.Errorf("checkpoint at seq %d: signature does not verify with this public key: the checkpoint was forged or altered, or the key is wrong", c.Seq)
	}
	return nil
}

// ReadCheckpoints reads dir's checkpoint log. A torn last line (crash while
// appending) is ignored; any other unparsable line is an error.
func ReadCheckpoints(dir string) ([]Checkpoint, error) {
	cps, err := ReadCheckpointFile(filepath.Join(dir, CheckpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return cps, err
}

// ReadCheckpointFile reads a checkpoint log (one JSON checkpoint per line,
// as in checkpoints.jsonl or as published to JetStream).
func ReadCheckpointFile(path string) ([]Checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	var out []Checkpoint
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			if !bytes.HasSuffix(data, []byte("\n")) && line == bytes.Count(data, []byte("\n"))+1 {
				break // torn final line
			}
			return nil, fmt.Errorf("%s line %d: %w", CheckpointFile, line, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// GenerateKey writes a new Ed25519 key pair: the private key (PKCS#8 PEM,
// mode 0600) to privPath and the public key (PKIX PEM) to pubPath.
func GenerateKey(privPath, pubPath string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate ed25519 key: %w", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	px, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		return err
	}
	return writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: px}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key (refusing to overwrite an existing key; pick another path): %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadPrivateKey reads a PKCS#8 PEM Ed25519 private key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	return loadKey[ed25519.PrivateKey](path, x509.ParsePKCS8PrivateKey, "an Ed25519 key (make one with `meshwarden audit keygen`)")
}

// LoadPublicKey reads a PKIX PEM Ed25519 public key.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	return loadKey[ed25519.PublicKey](path, x509.ParsePKIXPublicKey, "an Ed25519 public key")
}

// loadKey reads the PEM key at path, parses its block with parse and wants
// a K; want names a K in the error.
func loadKey[K any](path string, parse func([]byte) (any, error), want string) (K, error) {
	var zero K
	blk, err := readPEM(path)
	if err != nil {
		return zero, err
	}
	k, err := parse(blk)
	if err != nil {
		return zero, fmt.Errorf("parse %s: %w", path, err)
	}
	ek, ok := k.(K)
	if !ok {
		return zero, fmt.Errorf("%s holds a %T, want %s", path, k, want)
	}
	return ek, nil
}

func readPEM(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("%s is not PEM (make keys with `meshwarden audit keygen`)", path)
	}
	return blk.Bytes, nil
}
