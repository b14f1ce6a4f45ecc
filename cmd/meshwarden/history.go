package main

import (
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/meshwarden/meshwarden/controlplane/policystore"
)

func newPolicyHistoryCmd() *cobra.Command {
	var consul, prefix string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List every policy set applied through the replicated store, and verify its chain",
		Long: `Reads the policy store in Consul KV (what every plane replica serves) and
prints each applied set: sequence, when, who (the principal the plane
authenticated), from which replica and source, and the revision. The entries
are hash-chained; a deleted, reordered or edited entry fails the command.
Your Consul token (CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE) needs key:read
on the prefix.`,
		Example: `  meshwarden policy history --consul 127.0.0.1:8500`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := api.DefaultConfig()
			cc.Address = consul
			client, err := api.NewClient(cc)
			if err != nil {
				return fmt.Errorf("--consul %q: %w", consul, err)
			}
			store := policystore.New(client, prefix)
			sets, err := store.History(cmd.Context())
			out := cmd.OutOrStdout()
			for _, s := range sets {
				fmt.Fprintf(out, "#%-4d %s  %.12s  by %s  (%s, %s)\n", s.Seq, s.Time.UTC().Format(time.RFC3339), s.Revision, s.AppliedBy, s.Source, s.Replica)
			}
			if err != nil {
				return fmt.Errorf("policy history under %s: %w", prefix, err)
			}
			if len(sets) == 0 {
				fmt.Fprintf(out, "no policy set was ever applied through the store under %s\n", prefix)
				return nil
			}
			cur, err := store.Get(cmd.Context())
			if err != nil {
				return err
			}
			if cur == nil || cur.Hash != sets[len(sets)-1].Hash {
				return fmt.Errorf("the set in force (%s/current) is not the last entry of the history: the store was altered", prefix)
			}
			fmt.Fprintf(out, "OK: %d set(s), chain verified; in force: #%d %.12s\n", len(sets), cur.Seq, cur.Revision)
			return nil
		},
	}
	cmd.Flags().StringVar(&consul, "consul", envOr("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), "Consul HTTP address")
	cmd.Flags().StringVar(&prefix, "policy-kv-prefix", policystore.DefaultPrefix, "the store's KV prefix (the plane's --policy-kv-prefix)")
	return cmd
}
