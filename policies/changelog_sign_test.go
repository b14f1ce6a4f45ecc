package policies

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func signedLog(t *testing.T, n int) (string, ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	path := filepath.Join(t.TempDir(), "changes.jsonl")
	l, err := OpenChangeLog(path)
	if err != nil {
		t.Fatal(err)
	}
	l.SetSigner(priv)
	for i := range n {
		if _, err := l.Append(context.Background(), Change{Identity: "alice", Time: time.Unix(1700000000+int64(i), 0),
			Revision: strings.Repeat(string(rune('a'+i)), 64), Source: "policies/", Diff: "+x\n"}); err != nil {
			t.Fatal(err)
		}
	}
	return path, pub, priv
}

func TestSignedChangeLogVerifies(t *testing.T) {
	path, pub, _ := signedLog(t, 3)
	rep, err := VerifyChangeLog(path, pub, false)
	if err != nil || rep.Checkpoints != 3 || rep.LastSigned != 3 {
		t.Fatalf("good signed log: %v %+v", err, rep)
	}
}

func TestSignedChangeLogTampering(t *testing.T) {
	rechain := func(t *testing.T, path string, edit func(*ChangeRecord)) {
		recs, err := ReadChangeLog(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		prev := ""
		for i := range recs {
			r := &recs[i]
			edit(r)
			r.Chain(prev)
			prev = r.Hash
			line, _ := json.Marshal(r)
			out = append(append(out, line...), '\n')
		}
		os.WriteFile(path, out, 0o600)
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, path string, priv ed25519.PrivateKey)
		want   string
	}{
		{"re-chained with another identity", func(t *testing.T, path string, _ ed25519.PrivateKey) {
			rechain(t, path, func(r *ChangeRecord) {
				if r.Seq == 2 {
					r.Subject = "mallory"
				}
			})
		}, "rewritten"},
		{"checkpoints deleted", func(t *testing.T, path string, _ ed25519.PrivateKey) {
			os.Remove(path + CheckpointSuffix)
		}, "not covered by a signed checkpoint"},
		{"last change cut", func(t *testing.T, path string, _ ed25519.PrivateKey) {
			b, _ := os.ReadFile(path)
			lines := bytes.SplitAfter(b, []byte("\n"))
			os.WriteFile(path, bytes.Join(lines[:2], nil), 0o600)
		}, "changes were removed"},
		{"checkpoint signed by another key", func(t *testing.T, path string, _ ed25519.PrivateKey) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			os.Remove(path + CheckpointSuffix)
			l, _ := OpenChangeLog(path)
			l.SetSigner(other)
			l.Append(context.Background(), Change{Identity: "mallory", Revision: strings.Repeat("z", 64)})
		}, "does not verify with this public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, pub, priv := signedLog(t, 3)
			tc.tamper(t, path, priv)
			_, err := VerifyChangeLog(path, pub, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("unsigned log accepted only when allowed", func(t *testing.T) {
		path, recs := writeLog(t)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if _, err := VerifyChangeLog(path, pub, false); err == nil {
			t.Fatal("an unsigned change log verified")
		}
		rep, err := VerifyChangeLog(path, pub, true)
		if err != nil || len(rep.Warnings) != 1 || len(rep.Records) != len(recs) {
			t.Fatalf("allowUnsigned: %v %+v", err, rep)
		}
	})
}
