package e2e

import (
	"bytes"
	"context"
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
	"github.com/jitgrant/jitgrant/issuer/ca"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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
