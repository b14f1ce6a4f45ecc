package policies

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// CheckpointSuffix is appended to the change log's path for its signed
// checkpoint log.
const CheckpointSuffix = ".checkpoints"

// ChangeCheckpoint is a signed statement "the change log had head Hash at
// Seq at Time". [ChangeLog.Append] writes one after every change when the
// log has a signer, so the whole log is signed: a rewritten and re-chained
// log, or one cut short, no longer verifies with the public key.
type ChangeCheckpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Time int64  `json:"time"`
	Sig  string `json:"sig"` // base64 Ed25519 over signedBytes
}

// signedBytes is the exact message signed; its first line keeps these
// signatures apart from the audit collector's, should one key serve both.
func (c *ChangeCheckpoint) signedBytes() []byte {
	b := []byte("meshwarden-policy-checkpoint-v1\n")
	b = strconv.AppendUint(b, c.Seq, 10)
	b = append(b, '\n')
	b = append(b, c.Hash...)
	b = append(b, '\n')
	return strconv.AppendInt(b, c.Time, 10)
}

func (c *ChangeCheckpoint) verify(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil || !ed25519.Verify(pub, c.signedBytes(), sig) {
		return fmt.Errorf("checkpoint at change #%d: signature does not verify with this public key: forged or altered, or the key is wrong", c.Seq)
	}
	return nil
}

// SetSigner makes every later Append also write a signed checkpoint of the
// new head to the file at path+CheckpointSuffix.
func (l *ChangeLog) SetSigner(key ed25519.PrivateKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.signer = key
}

// writeCheckpoint appends a signed checkpoint of (seq, hash) and fsyncs it.
func (l *ChangeLog) writeCheckpoint(seq uint64, hash string) error {
	c := ChangeCheckpoint{Seq: seq, Hash: hash, Time: time.Now().UnixNano()}
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(l.signer, c.signedBytes()))
	line, _ := json.Marshal(&c)
	f, err := os.OpenFile(l.path+CheckpointSuffix, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("change checkpoint: open %s: %w", l.path+CheckpointSuffix, err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("change checkpoint: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("change checkpoint: fsync: %w", err)
	}
	return nil
}

// ChangeLogReport is what [VerifyChangeLog] found.
type ChangeLogReport struct {
	Records     []ChangeRecord
	Checkpoints int
	LastSigned  uint64
	// Warnings are accepted weaknesses (only with allowUnsigned).
	Warnings []string
}

// VerifyChangeLog checks the change log's chain (as ReadChangeLog does) and
// its signed checkpoints with pub, failing closed: every checkpoint must
// verify and match the record at its seq, the log must reach the last
// checkpoint (nothing cut), and every record must be covered by a signed
// checkpoint — unless allowUnsigned, which turns missing signatures into
// warnings.
func VerifyChangeLog(path string, pub ed25519.PublicKey, allowUnsigned bool) (*ChangeLogReport, error) {
	recs, err := ReadChangeLog(path)
	rep := &ChangeLogReport{Records: recs}
	if err != nil {
		return rep, err
	}
	data, err := os.ReadFile(path + CheckpointSuffix)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("change checkpoints: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var c ChangeCheckpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return rep, fmt.Errorf("%s%s:%d: not a checkpoint: %w", path, CheckpointSuffix, line, err)
		}
		if err := c.verify(pub); err != nil {
			return rep, fmt.Errorf("%s%s:%d: %w", path, CheckpointSuffix, line, err)
		}
		if c.Seq == 0 || c.Seq > uint64(len(recs)) {
			return rep, fmt.Errorf("change log %s ends at change #%d but a signed checkpoint covers change #%d: changes were removed", path, len(recs), c.Seq)
		}
		if recs[c.Seq-1].Hash != c.Hash {
			return rep, fmt.Errorf("change log %s: change #%d differs from its signed checkpoint: the log was rewritten from there on", path, c.Seq)
		}
		rep.Checkpoints++
		rep.LastSigned = max(rep.LastSigned, c.Seq)
	}
	if n := uint64(len(recs)); n > rep.LastSigned {
		why := fmt.Sprintf("changes #%d..#%d are not covered by a signed checkpoint: anyone could have written or rewritten them", rep.LastSigned+1, n)
		if !allowUnsigned {
			return rep, fmt.Errorf("change log %s: %s (sign with --changelog-key, or pass --allow-unsigned-tail)", path, why)
		}
		rep.Warnings = append(rep.Warnings, why)
	}
	return rep, nil
}
