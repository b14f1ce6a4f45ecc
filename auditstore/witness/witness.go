// Package witness reads the signed checkpoints the exporter published to a
// NATS JetStream stream (created with deny-delete and deny-purge), so that
// `meshwarden audit verify --witness` can check the collector's directory
// against a copy kept in another failure and trust domain.
package witness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshwarden/meshwarden/auditstore/wal"
)

// Config names the witness.
type Config struct {
	// URL of the NATS server (nats://host:port). Required.
	URL string
	// Stream holding the checkpoints. Default MESHWARDEN_AUDIT.
	Stream string
	// Subject the checkpoints are published on. Default
	// meshwarden.audit.checkpoints.
	Subject string
	// NATSOptions are extra connection options (credentials, TLS).
	NATSOptions []nats.Option
}

// ErrUnreachable wraps every failure to reach or read the witness.
var ErrUnreachable = errors.New("witness unreachable")

// Fetch returns every checkpoint on cfg.Subject in cfg.Stream, in stream
// order. ctx bounds the whole read.
func Fetch(ctx context.Context, cfg Config) ([]wal.Checkpoint, error) {
	if cfg.URL == "" {
		return nil, errors.New("witness: URL is empty: pass --witness nats://host:port")
	}
	if cfg.Stream == "" {
		cfg.Stream = "MESHWARDEN_AUDIT"
	}
	if cfg.Subject == "" {
		cfg.Subject = "meshwarden.audit.checkpoints"
	}
	opts := append([]nats.Option{nats.Name("meshwarden-audit-verify"), nats.MaxReconnects(0), nats.Timeout(2 * time.Second)}, cfg.NATSOptions...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrUnreachable, cfg.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	st, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s at %s: %w (is --witness-stream right, and has the collector exported to it?)", ErrUnreachable, cfg.Stream, cfg.URL, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if !info.Config.DenyDelete || !info.Config.DenyPurge {
		return nil, fmt.Errorf("witness stream %s allows deleting or purging messages, so it cannot witness deletions: recreate it with deny_delete and deny_purge", cfg.Stream)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{cfg.Subject}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	var out []wal.Checkpoint
	for range 1 << 20 { // bounded: at most a million fetches of 1000
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		for m := range batch.Messages() {
			var c wal.Checkpoint
			if err := json.Unmarshal(m.Data(), &c); err != nil {
				return nil, fmt.Errorf("witness message on %s is not a checkpoint: %w", cfg.Subject, err)
			}
			out = append(out, c)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		if ci.NumPending == 0 {
			return out, nil
		}
	}
	return out, nil
}
