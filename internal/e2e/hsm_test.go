package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgrant/jitgrant/internal/fakeclock"
	"github.com/jitgrant/jitgrant/internal/jitd"
	"github.com/jitgrant/jitgrant/internal/softhsmtest"
	"github.com/jitgrant/jitgrant/internal/syncbuf"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spiffejwt "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"go.step.sm/crypto/jose"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }

// TestCAKeyInSoftHSM2: jitd init --kms makes the CA key inside a SoftHSM2
// token and writes ca.crt but no ca.key; enroll and a real jitd sign with
// the token key; a grant is minted (and re-checked by Mint), fetched, and
// accepted by a protected service's verifier trusting ca.crt.
func TestCAKeyInSoftHSM2(t *testing.T) {
	tok := softhsmtest.Require(t)
	root := t.TempDir()
	e := &env{t: t, dir: jitd.DataDir(filepath.Join(root, "data")), clock: fakeclock.New(time.Now()),
		ids: map[string]string{}, logs: &syncbuf.Buffer{}}
	var out, errOut bytes.Buffer
	if code := jitd.Main(context.Background(), []string{"init", "--data-dir", string(e.dir), "--trust-domain", trustDomain,
		"--kms", tok.URI("")}, &out, &errOut); code != 0 {
		t.Fatalf("jitd init --kms: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(filepath.Join(string(e.dir), "ca.key")); !os.IsNotExist(err) {
		t.Fatalf("jitd init --kms left ca.key on disk: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(string(e.dir), "jitd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		CAKey string `yaml:"ca_key"`
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.CAKey, tok.URI("")[:strings.Index(tok.URI(""), "?")]+";id=") || !strings.Contains(m.CAKey, ";object=jitgrant-ca?pin-source=") {
		t.Fatalf("jitd.yaml ca_key %q: want the token URI with id, object=jitgrant-ca and pin-source", m.CAKey)
	}
	if !strings.Contains(out.String(), "CA key:           in the PKCS#11 token, "+m.CAKey) {
		t.Errorf("init output lacks the key's URI:\n%s", out.String())
	}
	// A passphrase does not apply to a token key.
	if _, err := jitd.Enroll(context.Background(), jitd.EnrollConfig{Dir: e.dir, ID: personID(dev), TTL: time.Hour, Out: filepath.Join(root, "x"),
		Passphrase: []byte("secret"), Clock: e.clock.Now}); err == nil || !strings.Contains(err.Error(), "the CA key is in a PKCS#11 token (ca_key in") {
		t.Errorf("enroll with a passphrase: %v, want an error naming ca_key", err)
	}

	e.writePolicy(testPolicy)
	for _, name := range []string{dev, alice, bob} {
		dir := filepath.Join(root, "id", name)
		if _, err := jitd.Enroll(context.Background(), jitd.EnrollConfig{Dir: e.dir, ID: personID(name), TTL: 4 * time.Hour, Out: dir, Clock: e.clock.Now}); err != nil {
			t.Fatalf("enroll %s: %v", name, err)
		}
		e.ids[name] = dir
	}
	e.cfg = jitd.ServeConfig{Dir: e.dir, Listen: "127.0.0.1:0", Clock: e.clock.Now, Logger: slog.New(slog.NewTextHandler(e.logs, nil))}
	e.start()
	t.Cleanup(func() {
		if err := e.srv.Stop(); err != nil {
			t.Errorf("jitd Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("jitd log:\n%s", e.logs.String())
		}
	})

	// The protected service's own SVID comes from the token key too.
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	c, err := ca.LoadKMS(context.Background(), ca.Config{TrustDomain: td, Clock: e.clock.Now}, e.dir.CACert(), m.CAKey)
	if err != nil {
		t.Fatalf("ca.LoadKMS: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ledger := e.startLedgerWith(c)

	id, dir := e.refund("INC-19")
	e.ok(alice, "approve", id)
	e.ok(bob, "approve", id)
	e.wantState(dev, id, pb.State_STATE_ISSUED)
	e.ok(dev, "fetch", id, "--out", dir)

	// The grant chains to ca.crt, whose key never left the token.
	svid, err := x509svid.Load(filepath.Join(dir, "grant.pem"), filepath.Join(dir, "grant.key"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(td, e.dir.CACert())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Errorf("the grant does not verify under ca.crt: %v", err)
	}
	if err := ca.CheckSVID(svid.Certificates[0], svid.ID, bundle.X509Authorities()[0]); err != nil {
		t.Errorf("CheckSVID of the grant: %v", err)
	}
	if got, err := callLedger(e.dialLedger(ledger, dir), mRefund, "accounts/1"); err != nil || got != id {
		t.Fatalf("Refund accounts/1 with the grant from the token-keyed CA: %q, %v", got, err)
	}
}

// TestJWTKeyInSoftHSM2: jitd init --kms makes the JWT-SVID key in the token
// beside the CA key (jwt_key in jitd.yaml, no jwt.key); a JWT-SVID fetched
// from jitd's Workload API is signed by that key and validates with the
// JWT bundle the Workload API publishes, by go-spiffe, by package jwtsvid
// and by ValidateJWTSVID, also after a restart.
func TestJWTKeyInSoftHSM2(t *testing.T) {
	tok := softhsmtest.Require(t)
	root := t.TempDir()
	dir := jitd.DataDir(filepath.Join(root, "data"))
	var out, errOut bytes.Buffer
	if code := jitd.Main(context.Background(), []string{"init", "--data-dir", string(dir), "--trust-domain", trustDomain,
		"--kms", tok.URI("")}, &out, &errOut); code != 0 {
		t.Fatalf("jitd init --kms: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(filepath.Join(string(dir), "jwt.key")); !os.IsNotExist(err) {
		t.Fatalf("jitd init --kms left jwt.key on disk: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(string(dir), "jitd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		CAKey  string `yaml:"ca_key"`
		JWTKey string `yaml:"jwt_key"`
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	tokenURI := tok.URI("")[:strings.Index(tok.URI(""), "?")]
	if !strings.HasPrefix(m.JWTKey, tokenURI+";id=") || !strings.Contains(m.JWTKey, ";object=jitgrant-jwt?pin-source=") {
		t.Fatalf("jitd.yaml jwt_key %q: want the token URI with id, object=jitgrant-jwt and pin-source", m.JWTKey)
	}
	idOf := func(u string) string { return strings.SplitN(strings.SplitN(u, ";id=", 2)[1], ";", 2)[0] }
	if idOf(m.JWTKey) == idOf(m.CAKey) {
		t.Errorf("the JWT key and the CA key share id %s", idOf(m.JWTKey))
	}
	if !strings.Contains(out.String(), "JWT-SVID key:     in the PKCS#11 token, "+m.JWTKey) {
		t.Errorf("init output lacks the JWT key's URI:\n%s", out.String())
	}
	// The token key's public key, for the kid every token must carry.
	k, err := ca.OpenTokenKey(context.Background(), m.JWTKey, "JWT key")
	if err != nil {
		t.Fatal(err)
	}
	key, err := k.Signer()
	if err != nil {
		t.Fatal(err)
	}
	wantKID, err := jose.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	k.Close()
	if err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(root, "agent.sock")
	logs := &syncbuf.Buffer{}
	cfg := jitd.ServeConfig{Dir: dir, Listen: "127.0.0.1:0", WorkloadSocket: sock, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Clock:   time.Now, // go-spiffe checks JWT-SVIDs against the wall clock
		Entries: []attest.EntryConfig{{ID: "spiffe://example.org/workload/hsm", Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())}, TTL: "1h"}}}
	const audience = "spiffe://example.org/ledger"
	var first string
	for run := range 2 {
		srv, err := jitd.Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("run %d: jitd Start: %v\n%s", run, err, logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+sock))
		if err != nil {
			t.Fatal(err)
		}
		svid, err := client.FetchJWTSVID(ctx, spiffejwt.Params{Audience: audience})
		if err != nil {
			t.Fatalf("run %d: FetchJWTSVID: %v\n%s", run, err, logs.String())
		}
		bundles, err := client.FetchJWTBundles(ctx)
		if err != nil {
			t.Fatalf("run %d: FetchJWTBundles: %v", run, err)
		}
		td := spiffeid.RequireTrustDomainFromString(trustDomain)
		bundle, err := bundles.GetJWTBundleForTrustDomain(td)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := bundle.FindJWTAuthority(wantKID); !ok || len(bundle.JWTAuthorities()) != 1 {
			t.Errorf("run %d: the JWT bundle holds %d keys, want the token key's (kid %s) alone", run, len(bundle.JWTAuthorities()), wantKID)
		}
		tokens := []string{svid.Marshal()}
		if run == 1 {
			tokens = append(tokens, first) // the token of the first run, signed by the same key
		} else {
			first = svid.Marshal()
		}
		for _, token := range tokens {
			parsed, err := spiffejwt.ParseAndValidate(token, bundles, []string{audience})
			if err != nil {
				t.Fatalf("run %d: go-spiffe ParseAndValidate: %v", run, err)
			}
			if parsed.ID.String() != "spiffe://example.org/workload/hsm" {
				t.Errorf("run %d: JWT-SVID for %s", run, parsed.ID)
			}
			c, err := jwtsvid.Validate(token, audience, bundles)
			if err != nil {
				t.Fatalf("run %d: jwtsvid.Validate: %v", run, err)
			}
			if c.KeyID != wantKID {
				t.Errorf("run %d: kid %q, want the token key's %q", run, c.KeyID, wantKID)
			}
			if _, err := client.ValidateJWTSVID(ctx, token, audience); err != nil {
				t.Errorf("run %d: the Workload API's ValidateJWTSVID: %v", run, err)
			}
		}
		client.Close()
		cancel()
		if err := srv.Stop(); err != nil {
			t.Errorf("run %d: jitd Stop: %v", run, err)
		}
	}
	if _, err := os.Stat(filepath.Join(string(dir), "jwt.key")); !os.IsNotExist(err) {
		t.Errorf("jitd serve wrote jwt.key: %v", err)
	}
}
