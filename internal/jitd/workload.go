package jitd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/issuer"
	"github.com/jitgrant/jitgrant/issuer/attest"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/jitgrant/jitgrant/issuer/jwtsvid"
	"github.com/jitgrant/jitgrant/issuer/wlapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// fileJWTKey is the JWT-SVID signing key of the data directory (0600).
const fileJWTKey = "jwt.key"

// jwtSigner loads the data directory's JWT-SVID key, making it on first use
// (data directories from before JWT-SVIDs existed have none).
func (d DataDir) jwtSigner(td spiffeid.TrustDomain, clock func() time.Time) (*jwtsvid.Signer, bool, error) {
	cfg := jwtsvid.Config{TrustDomain: td, Clock: clock}
	s, err := jwtsvid.LoadSignerFile(cfg, d.path(fileJWTKey))
	if err == nil {
		return s, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("jitd: %w", err)
	}
	if s, err = jwtsvid.GenerateSigner(cfg); err != nil {
		return nil, false, fmt.Errorf("jitd: %w", err)
	}
	if err := s.WriteKeyFile(d.path(fileJWTKey)); err != nil {
		return nil, false, fmt.Errorf("jitd: %w", err)
	}
	return s, true, nil
}

// jwtKeyObject is the PKCS#11 label (object) of the JWT-SVID signing key
// that jitd init --kms makes in the CA key's token.
const jwtKeyObject = "jitgrant-jwt"

// createJWTKeyKMS makes a P-256 JWT-SVID signing key in a PKCS#11 token,
// under keyURI (init makes it from the CA key's with ca.NewKeyURI: a random
// id, object=jitgrant-jwt), and returns it open: the caller deletes it if a
// later step fails, and closes it.
func createJWTKeyKMS(ctx context.Context, keyURI string, td spiffeid.TrustDomain, clock func() time.Time) (*ca.TokenKey, error) {
	k, err := ca.OpenTokenKey(ctx, keyURI, "JWT key")
	if err != nil {
		return nil, err
	}
	key, err := k.Create(ca.KeyTypeECP256)
	if err != nil {
		k.Close()
		return nil, err
	}
	if _, err := jwtsvid.NewSigner(jwtsvid.Config{TrustDomain: td, Clock: clock}, key); err != nil {
		_ = k.Delete()
		k.Close()
		return nil, err
	}
	return k, nil
}

// loadJWTSigner loads the data directory's JWT-SVID key: from the PKCS#11
// token jitd.yaml's jwt_key names, open until the returned closer is
// closed (nil for a file), or else as jwtSigner does, from jwt.key.
func (d DataDir) loadJWTSigner(ctx context.Context, td spiffeid.TrustDomain, clock func() time.Time) (_ *jwtsvid.Signer, made bool, _ io.Closer, err error) {
	m, _, err := d.readMeta()
	if err != nil {
		return nil, false, nil, err
	}
	if m.JWTKey == "" {
		s, made, err := d.jwtSigner(td, clock)
		return s, made, nil, err
	}
	k, err := ca.OpenTokenKey(ctx, m.JWTKey, "JWT key")
	if err != nil {
		return nil, false, nil, fmt.Errorf("jitd: %w (jwt_key in %s)", err, d.path(fileMeta))
	}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	key, err := k.Signer()
	if err != nil {
		return nil, false, nil, fmt.Errorf("jitd: %w (jwt_key in %s)", err, d.path(fileMeta))
	}
	s, err := jwtsvid.NewSigner(jwtsvid.Config{TrustDomain: td, Clock: clock}, key)
	if err != nil {
		return nil, false, nil, fmt.Errorf("jitd: %w (jwt_key in %s)", err, d.path(fileMeta))
	}
	return s, false, k, nil
}

// parseEntries parses the registration entries of the configuration and
// checks that every one names an ID of the trust domain.
func parseEntries(cfgs []attest.EntryConfig, td spiffeid.TrustDomain) (attest.Entries, error) {
	es, err := attest.ParseEntries(cfgs)
	if err != nil {
		return nil, fmt.Errorf("jitd: entries: %w", err)
	}
	for i, e := range es {
		if !e.ID.MemberOf(td) {
			return nil, fmt.Errorf("jitd: entries[%d]: %s is not in trust domain %s", i, e.ID, td)
		}
	}
	return es, nil
}

// entriesRecord is the audit record of the registration entries in force:
// every start of the Workload API records the set and its hash, so that
// each change of entries is in the log.
func entriesRecord(id spiffeid.ID, es attest.Entries) audit.Record {
	lines := make([]string, 0, len(es))
	for _, e := range es {
		lines = append(lines, e.String())
	}
	text := strings.Join(lines, "\n")
	sum := sha256.Sum256([]byte(text))
	return audit.Record{Actor: id.String(), Action: audit.ActionEntriesLoaded, Details: map[string]string{
		"count": fmt.Sprint(len(es)), "sha256": hex.EncodeToString(sum[:]), "entries": text,
	}}
}

// startWorkloadAPI serves the SPIFFE Workload API on the configured socket.
func (s *Server) startWorkloadAPI(ctx context.Context, c *ca.CA, td spiffeid.TrustDomain, store issuer.Store) error {
	entries, err := parseEntries(s.cfg.Entries, td)
	if err != nil {
		return err
	}
	signer, made, jwtKey, err := s.cfg.Dir.loadJWTSigner(ctx, td, s.cfg.Clock)
	if err != nil {
		return err
	}
	s.jwtKey = jwtKey
	if made {
		s.cfg.Logger.Info("jitd: made a JWT-SVID signing key", "path", s.cfg.Dir.path(fileJWTKey), "kid", signer.KeyID())
	}
	if err := store.Audit(ctx, entriesRecord(s.id, entries)); err != nil {
		return fmt.Errorf("jitd: auditing the registration entries: %w", err)
	}
	att, err := attest.New(attest.Config{Clock: s.cfg.Clock, Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("jitd: %w", err)
	}
	s.wl, err = wlapi.New(wlapi.Config{
		CA: c, JWT: signer, Issuer: s.issuer, Attestor: att,
		Entries: func() attest.Entries { return entries },
		Clock:   s.cfg.Clock, Logger: s.cfg.Logger,
		ServerOptions: s.limits.connOptions(),
	})
	if err != nil {
		return fmt.Errorf("jitd: %w", err)
	}
	if s.wlLis, err = wlapi.Listen(s.cfg.WorkloadSocket); err != nil {
		return fmt.Errorf("jitd: workload socket: %w", err)
	}
	if s.wlLis, err = s.limits.listen(s, s.wlLis, "workload", s.limits.cfg.WorkloadMaxConnections); err != nil {
		return err
	}
	s.goRun(func() { _ = s.wl.Serve(s.wlLis) })
	return nil
}

// WorkloadSocket returns the Workload API socket's path, "" when off.
func (s *Server) WorkloadSocket() string {
	if s.wlLis == nil {
		return ""
	}
	return s.cfg.WorkloadSocket
}
