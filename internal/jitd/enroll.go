package jitd

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jitgrant/jitgrant/internal/safefile"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/internal/kv"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The files Enroll writes.
const (
	EnrollCert   = "svid.pem"   // the identity SVID and its chain
	EnrollKey    = "svid.key"   // its private key, PKCS#8, 0600
	EnrollBundle = "bundle.pem" // the trust bundle
)

// EnrollConfig configures Enroll.
type EnrollConfig struct {
	Dir        DataDir
	ID         string // the person's SPIFFE ID
	TTL        time.Duration
	Out        string // directory for svid.pem, svid.key, bundle.pem
	Passphrase []byte
	Clock      func() time.Time
}

// MaxEnrollTTL bounds how long an enrolled identity lasts.
const MaxEnrollTTL = 30 * 24 * time.Hour

// Enroll mints an identity SVID for a person and writes it, its key (0600)
// and the trust bundle to cfg.Out, and records the enrollment in the audit
// log. It needs the data directory to itself: it fails while jitd serve
// runs on it.
func Enroll(ctx context.Context, cfg EnrollConfig) (*x509.Certificate, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	_, td, err := cfg.Dir.readMeta()
	if err != nil {
		return nil, err
	}
	id, err := spiffeid.FromString(cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: --id: %w", err)
	}
	if !id.MemberOf(td) {
		return nil, fmt.Errorf("jitd: enroll: --id %s is not in trust domain %s", id, td)
	}
	if cfg.TTL <= 0 || cfg.TTL > MaxEnrollTTL {
		return nil, fmt.Errorf("jitd: enroll: --ttl %s not in (0, %s]", cfg.TTL, MaxEnrollTTL)
	}
	if cfg.Out == "" {
		return nil, errors.New("jitd: enroll: --out is required")
	}
	for _, name := range []string{EnrollCert, EnrollKey, EnrollBundle} {
		if _, err := os.Stat(filepath.Join(cfg.Out, name)); err == nil {
			return nil, fmt.Errorf("jitd: enroll: %s already exists", filepath.Join(cfg.Out, name))
		}
	}
	c, err := cfg.Dir.loadCA(ctx, td, cfg.Passphrase, cfg.Clock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	signer, err := audit.ReadSigner(cfg.Dir.path(fileAuditKey))
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	db, err := kv.Open(cfg.Dir.path(dirDB), kv.Config{GCInterval: -1})
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	defer db.Close()
	log, err := audit.New(db.DB, audit.Config{Signer: signer, Origin: "jitgrant audit " + td.Name(), Actor: ServerID(td).String(), Now: cfg.Clock,
		WriteCheck: db.CheckWrite})
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	defer log.Close()
	svid, err := c.Mint(ca.Request{ID: id, TTL: cfg.TTL})
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	leaf := svid.Certificates[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	if err := os.MkdirAll(cfg.Out, 0o700); err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	// Audit first: an identity that was not recorded must not exist.
	_, err = log.Append(ctx, audit.Record{
		Actor: ServerID(td).String(), Action: audit.ActionEnrolled, Subject: "",
		Details: map[string]string{"id": id.String(), "serial": fmt.Sprintf("%x", leaf.SerialNumber),
			"not_after": leaf.NotAfter.UTC().Format(time.RFC3339)},
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("jitd: enroll: %w", err)
	}
	files := []struct {
		name  string
		perm  os.FileMode
		block []*pem.Block
	}{
		{EnrollKey, 0o600, []*pem.Block{{Type: "PRIVATE KEY", Bytes: keyDER}}},
		{EnrollCert, 0o644, pemCerts(svid.Certificates)},
		{EnrollBundle, 0o644, pemCerts(c.Bundle().X509Authorities())},
	}
	for _, f := range files {
		if err := writePEM(filepath.Join(cfg.Out, f.name), f.perm, f.block); err != nil {
			return nil, fmt.Errorf("jitd: enroll: %w", err)
		}
	}
	return leaf, nil
}

func pemCerts(certs []*x509.Certificate) []*pem.Block {
	out := make([]*pem.Block, 0, len(certs))
	for _, c := range certs {
		out = append(out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return out
}

// writePEM writes blocks to a new file with perm; it never overwrites nor
// leaves a partial file.
func writePEM(path string, perm os.FileMode, blocks []*pem.Block) error {
	var buf []byte
	for _, b := range blocks {
		buf = append(buf, pem.EncodeToMemory(b)...)
	}
	return safefile.WriteNew(path, buf, perm)
}
