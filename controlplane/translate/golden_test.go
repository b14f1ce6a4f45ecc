package translate

// The golden harness: every testdata/in/<case>.yaml is run through the
// pipeline the plane runs (policy files → policies.LoadFiles → ir.PolicySet
// → intentions merged → Build → Shared.Validate → ForNode per node →
// ValidateAll, ValidateNode, Consistent) and the result is compared with
// testdata/out/<case>/. The input format and how to add a case are in
// README.md ("Goldens").
//
//	go test ./controlplane/translate -run Golden           # compare
//	go test ./controlplane/translate -run Golden -update   # rewrite testdata/out

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/hashicorp/consul/api"
	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/controlplane/certs"
	"github.com/meshwarden/meshwarden/controlplane/intentions"
	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current pipeline")

// goldenInput is one testdata/in/<case>.yaml. Every field is optional.
type goldenInput struct {
	// Options are translate.Options laid over goldenDefaults (a field
	// set to null or "" clears the default).
	Options json.RawMessage `json:"options"`
	// Catalog is the Consul snapshot: service name → instances
	// (id, node, address, port, tags, meta, healthy).
	Catalog map[string][]ir.Instance `json:"catalog"`
	// Policies are policy files (name → content) loaded together by
	// policies.LoadFiles against Catalog, as the plane loads a directory.
	Policies map[string]string `json:"policies"`
	// PolicyFiles are repository files added to Policies under their base
	// name (paths relative to this package), e.g. the checked-in examples.
	PolicyFiles []string `json:"policyFiles"`
	// IR is a policy set as a producer other than the loader would hand it
	// to the translator (its JSON field names); it replaces Policies. It
	// shows what the translator itself refuses.
	IR *ir.PolicySet `json:"ir"`
	// Intentions are Consul service-intentions config entries, translated
	// and merged into the policy set as the plane does (an AccessPolicy
	// wins for its service).
	Intentions []*api.ServiceIntentionsConfigEntry `json:"intentions"`
	// Nodes to render; default: gw-1 (the gateway) and <svc>-sidecar-1 for
	// the first catalog service (or web).
	Nodes []goldenNode `json:"nodes"`
}

type goldenNode struct {
	ID       string            `json:"id"`
	Cluster  string            `json:"cluster"`
	Metadata map[string]string `json:"metadata"`
}

// goldenDefaults are the options of a plane whose module server has built
// every filter: the sha256s stand for its current builds.
func goldenDefaults() Options {
	return Options{
		ModuleBaseURL: "http://127.0.0.1:18000/modules/",
		ModuleSHA256: map[string]string{
			"dye":   strings.Repeat("d", 64),
			"audit": strings.Repeat("a", 64),
			"trace": strings.Repeat("7", 64),
		},
	}
}

func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	cases := map[string]bool{}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		cases[name] = true
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var gi goldenInput
			if err := yaml.UnmarshalStrict(raw, &gi); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			got := runGolden(t, &gi)
			if strings.HasPrefix(name, "error-") != got.rejected() {
				t.Errorf("case %s: rejected = %v; inputs named error-* must be rejected (by the loader, the translator or for a node), others accepted", name, got.rejected())
			}
			compareGolden(t, filepath.Join("testdata", "out", name), got.files)
		})
	}
	// An output directory without an input is stale.
	outs, _ := filepath.Glob("testdata/out/*")
	for _, o := range outs {
		if !cases[filepath.Base(o)] {
			if *update {
				if err := os.RemoveAll(o); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s has no input testdata/in/%s.yaml: remove it (or run with -update)", o, filepath.Base(o))
		}
	}
}

// goldenResult is the files of testdata/out/<case>/ (relative name →
// content) and what was refused.
type goldenResult struct {
	files      map[string][]byte
	errorCount int
}

func (r goldenResult) rejected() bool { return r.errorCount > 0 }

// goldenRun is one case in progress: its messages and output files.
type goldenRun struct {
	t   *testing.T
	gi  *goldenInput
	res goldenResult
	msg bytes.Buffer
}

func (r *goldenRun) say(format string, a ...any) { fmt.Fprintf(&r.msg, format+"\n", a...) }

// runGolden runs one case. Its messages.txt holds every user-facing line,
// in pipeline order: the loader's diagnostics, the translator's error or
// warnings, each node's version or error. Each accepted node gets
// <node>/<type>.yaml per non-empty resource type, and an accepted set its
// IR in ir.yaml.
func runGolden(t *testing.T, gi *goldenInput) goldenResult {
	t.Helper()
	r := &goldenRun{t: t, gi: gi, res: goldenResult{files: map[string][]byte{}}}
	defer func() { r.res.files["messages.txt"] = r.msg.Bytes() }()
	cat, opts := r.catalog(), r.options()
	ps := r.load(cat) // 1. policy files → IR (the loader), or IR as given
	if ps == nil {
		return r.res
	}
	ps = r.mergeIntentions(ps) // 2. Consul intentions, merged as the plane does
	irYAML, err := yaml.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	r.res.files["ir.yaml"] = irYAML
	shared := r.build(cat, ps, opts) // 3. what every node shares
	if shared == nil {
		return r.res
	}
	nWarn := len(shared.Warnings)
	keys := r.nodes(cat, shared, opts) // 4. per node
	// ForNode may add warnings (an mTLS cluster variant that fails validation).
	for _, w := range shared.Warnings[nWarn:] {
		r.say("  warning (node resources): %s", w)
	}
	r.noPrivateKeys(keys)
	return r.res
}

func (r *goldenRun) catalog() *ir.Catalog {
	cat := &ir.Catalog{Services: map[string]*ir.Service{}}
	for name, ins := range r.gi.Catalog {
		cat.Services[name] = &ir.Service{Name: name, Instances: ins}
	}
	return cat
}

func (r *goldenRun) options() Options {
	opts := goldenDefaults()
	if len(r.gi.Options) > 0 {
		dec := json.NewDecoder(bytes.NewReader(r.gi.Options))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&opts); err != nil {
			r.t.Fatalf("options: %v", err)
		}
	}
	return opts
}

// load returns the case's policy set, or nil when the loader rejects it.
func (r *goldenRun) load(cat *ir.Catalog) *ir.PolicySet {
	gi := r.gi
	if gi.IR != nil {
		if len(gi.Policies) > 0 || len(gi.PolicyFiles) > 0 {
			r.t.Fatal("give either ir or policies/policyFiles, not both")
		}
		r.say("policies: given as IR (not through the loader)")
		return gi.IR
	}
	files := map[string][]byte{}
	for n, c := range gi.Policies {
		files[n] = []byte(c)
	}
	for _, p := range gi.PolicyFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			r.t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	loaded, diags, err := policies.LoadFiles(files, cat)
	if err != nil && !diags.HasErrors() {
		r.t.Fatalf("loader failed without diagnostics: %v", err)
	}
	if diags.HasErrors() {
		r.say("policies: rejected, %d error(s)", len(diags.Errors))
	} else {
		r.say("policies: accepted, %d file(s)", len(files))
	}
	for _, l := range diags.All() {
		r.say("  %s", l)
	}
	if diags.HasErrors() {
		r.res.errorCount += len(diags.Errors)
		return nil
	}
	return loaded
}

func (r *goldenRun) mergeIntentions(ps *ir.PolicySet) *ir.PolicySet {
	if len(r.gi.Intentions) == 0 {
		return ps
	}
	entries := make([]api.ConfigEntry, len(r.gi.Intentions))
	for i, e := range r.gi.Intentions {
		entries[i] = e
	}
	fromIntentions, warnings := intentions.Translate(entries)
	merged, notes := intentions.Merge(ps, fromIntentions)
	r.say("intentions: %d access policies", len(fromIntentions))
	for _, w := range append(warnings, notes...) {
		r.say("  warning: %s", w)
	}
	return merged
}

// build translates what every node shares, or returns nil when the
// translator refuses.
func (r *goldenRun) build(cat *ir.Catalog, ps *ir.PolicySet, opts Options) *Shared {
	shared, err := Build(cat, ps, opts)
	if err != nil {
		r.say("translate: rejected")
		for _, l := range strings.Split(err.Error(), "\n") {
			r.say("  %s", l)
		}
		r.res.errorCount++
		return nil
	}
	if verr := shared.Validate(); verr != nil {
		r.t.Errorf("shared resources fail Envoy validation: %v", verr)
	}
	if len(shared.Warnings) == 0 {
		r.say("translate: accepted")
	} else {
		r.say("translate: accepted, %d warning(s)", len(shared.Warnings))
	}
	for _, w := range shared.Warnings {
		r.say("  warning: %s", w)
	}
	return shared
}

// nodes translates and checks every node of the case and returns the
// private keys of their leaves (which no golden may hold).
func (r *goldenRun) nodes(cat *ir.Catalog, shared *Shared, opts Options) []string {
	nodes := r.gi.Nodes
	if len(nodes) == 0 {
		svc := "web"
		if names := upstreamNames(cat); len(names) > 0 {
			svc = names[0]
		}
		nodes = []goldenNode{{ID: "gw-1", Cluster: meshnames.GatewayNodeCluster}, {ID: svc + "-sidecar-1", Cluster: svc}}
	}
	var keys []string
	for _, gn := range nodes {
		n, err := NodeFromMetadata(gn.ID, gn.Cluster, gn.Metadata)
		if err != nil {
			r.say("node %s: rejected: %v", gn.ID, err)
			r.res.errorCount++
			continue
		}
		var secrets []types.Resource
		if opts.MTLS {
			secrets = goldenSecrets(r.t, opts, n)
			keys = append(keys, goldenKeyPEM(n.service()))
		}
		snap, err := shared.ForNode(n, secrets)
		if err != nil {
			r.say("node %s: rejected: %v", gn.ID, err)
			r.res.errorCount++
			continue
		}
		r.node(gn.ID, n, snap)
	}
	return keys
}

// node checks one node's snapshot with Envoy's validation and writes its
// resources per type.
func (r *goldenRun) node(id string, n Node, snap *Snapshot) {
	t := r.t
	if err := snap.Validate(); err != nil {
		t.Errorf("node %s: resources fail Envoy validation (ValidateAll): %v", id, err)
	}
	if err := snap.ValidateNode(); err != nil {
		t.Errorf("node %s: ValidateNode: %v", id, err)
	}
	if err := snap.CacheSnapshotConsistent(); err != nil {
		t.Errorf("node %s: snapshot not consistent: %v", id, err)
	}
	d, err := snap.Dump()
	if err != nil {
		t.Fatal(err)
	}
	var counts []string
	for _, to := range typeOrder {
		list, ok := d[to.key]
		if !ok {
			continue
		}
		b, err := yaml.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		r.res.files[id+"/"+to.key+".yaml"] = b
		counts = append(counts, fmt.Sprintf("%s %d", to.key, len(list.([]any))))
	}
	r.say("node %s: %s, version %s (%s)", id, kindOf(n), snap.Version, strings.Join(counts, ", "))
}

// noPrivateKeys fails the case if any output holds a private key (goldens
// are shown, diffed, logged).
func (r *goldenRun) noPrivateKeys(keys []string) {
	for name, b := range r.res.files {
		for _, k := range keys {
			if bytes.Contains(b, []byte(k)) || bytes.Contains(b, []byte("PRIVATE KEY")) ||
				bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(k))[:40])) {
				r.t.Errorf("%s holds a private key: secrets must be redacted", name)
			}
		}
	}
}

func kindOf(n Node) string {
	if n.Gateway {
		return "gateway"
	}
	return "sidecar of " + n.Service
}

// compareGolden checks (or with -update rewrites) dir against files: same
// set of files, same contents.
func compareGolden(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	have := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		have[filepath.ToSlash(rel)] = true
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s/%s: %v (run go test ./controlplane/translate -run Golden -update)", dir, name, err)
			continue
		}
		if got := files[name]; !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from the pipeline's output; if the change is intended, run with -update.\n%s",
				dir, name, policies.UnifiedDiff("want", "got", string(want), string(got)))
		}
	}
	for name := range have {
		if _, ok := files[name]; !ok {
			t.Errorf("%s/%s is no longer produced (run with -update to remove it)", dir, name)
		}
	}
}

// goldenSecrets are the SDS secrets a certificate source would give node:
// its leaf (a fixed Ed25519 key, so the golden is stable) and the roots.
func goldenSecrets(t *testing.T, opts Options, n Node) []types.Resource {
	t.Helper()
	svc := n.service()
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "meshwarden-golden-"+svc)
	key := ed25519.NewKeyFromSeed(seed)
	uri, err := url.Parse(SPIFFEID(opts.TrustDomain, opts.Datacenter, svc))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: svc},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		URIs:         []*url.URL{uri},
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c, err := certs.NewCertificate(svc, chain, []byte(goldenKeyPEM(svc)))
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs.LeafSecret(svc, c)
	roots := &tlsv3.Secret{Name: meshnames.RootsSecretName, Type: &tlsv3.Secret_ValidationContext{
		ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: leaf.GetTlsCertificate().GetCertificateChain()},
	}}
	return []types.Resource{leaf, roots}
}

func goldenKeyPEM(svc string) string {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "meshwarden-golden-"+svc)
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
