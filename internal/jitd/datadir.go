// Package jitd is the jitgrant daemon: its data directory (init), offline
// enrollment of people, and the server (serve) that runs the issuer API over
// mTLS, the sweeper, policy reloads and the metrics endpoint. cmd/jitd is a
// thin command line over it, and tests run it in-process.
package jitd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/audit"
	"github.com/jitgrant/jitgrant/issuer/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// The files of a data directory.
const (
	fileCACert    = "ca.crt"
	fileCAKey     = "ca.key"      // 0600, optionally encrypted
	fileAuditKey  = "audit.key"   // 0600, note signer key
	fileAuditPub  = "audit.pub"   // note verifier key, for auditors
	fileMeta      = "jitd.yaml"   // trust domain and what init made
	filePolicy    = "policy.yaml" // written by init: denies everything
	dirDB         = "db"
	initialPolicy = `# jitgrant policy. Nothing is allowed until a rule says so.
# See the policy package documentation for every key.
version: 1
max_ttl: 1h
groups: {}
permissions: {}
rules: []
`
)

// DataDir is a jitd data directory.
type DataDir string

func (d DataDir) path(name string) string { return filepath.Join(string(d), name) }

// CACert returns the path of the CA certificate, the trust bundle people and
// services need.
func (d DataDir) CACert() string { return d.path(fileCACert) }

// AuditPublicKey returns the path of the audit verifier key.
func (d DataDir) AuditPublicKey() string { return d.path(fileAuditPub) }

// Policy returns the path of the policy file init writes.
func (d DataDir) Policy() string { return d.path(filePolicy) }

// meta is what jitd.yaml records.
type meta struct {
	TrustDomain string    `yaml:"trust_domain"`
	Created     time.Time `yaml:"created"`
	CAKeyType   string    `yaml:"ca_key_type"`
	// CAKey is the URI of a CA key held in a PKCS#11 token (jitd init
	// --kms); "" means the file ca.key.
	CAKey string `yaml:"ca_key,omitempty"`
	// JWTKey is the URI of the JWT-SVID signing key held in a PKCS#11
	// token (jitd init --kms makes it beside the CA key); "" means the
	// file jwt.key.
	JWTKey string `yaml:"jwt_key,omitempty"`
}

func (d DataDir) readMeta() (meta, spiffeid.TrustDomain, error) {
	var m meta
	b, err := os.ReadFile(d.path(fileMeta))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return m, spiffeid.TrustDomain{}, fmt.Errorf("jitd: %s is not a jitd data directory (no %s): run jitd init", d, fileMeta)
		}
		return m, spiffeid.TrustDomain{}, fmt.Errorf("jitd: %w", err)
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return m, spiffeid.TrustDomain{}, fmt.Errorf("jitd: %s: %w", d.path(fileMeta), err)
	}
	if m.TrustDomain == "" && looksLikeServeConfig(b) {
		return m, spiffeid.TrustDomain{}, fmt.Errorf("jitd: %s holds a serve configuration (data_dir, listen, ...), not the data directory's "+
			"own file that jitd init wrote (trust_domain, created, ca_key_type): restore that file, and keep serve "+
			"settings in another file such as serve.yaml, given to --config", d.path(fileMeta))
	}
	td, err := spiffeid.TrustDomainFromString(m.TrustDomain)
	if err != nil {
		return m, spiffeid.TrustDomain{}, fmt.Errorf("jitd: %s: trust_domain: %w", d.path(fileMeta), err)
	}
	return m, td, nil
}

// metaKeys are the keys of a data directory's jitd.yaml.
var metaKeys = []string{"trust_domain", "created", "ca_key_type"}

// looksLikeServeConfig reports whether YAML b has a key of a serve
// configuration file.
func looksLikeServeConfig(b []byte) bool {
	return hasAnyKey(b, "data_dir", "listen", "policy", "metrics_listen", "log_json", "max_ttl_cap",
		"ca_passphrase_file", "workload_socket", "entries", "webhooks")
}

// hasAnyKey reports whether YAML b is a mapping with one of keys.
func hasAnyKey(b []byte, keys ...string) bool {
	var m map[string]any
	if yaml.Unmarshal(b, &m) != nil {
		return false
	}
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// InitConfig configures Init.
type InitConfig struct {
	Dir         DataDir
	TrustDomain string
	KeyType     string // ca.ParseKeyType; default ec-p256
	CATTL       time.Duration
	Passphrase  []byte // encrypts the CA key when not nil; must not be empty then
	// KMS, when set, is a pkcs11: URI of a token to create the CA key in
	// (ca.GenerateKMS): no ca.key is written, and jitd.yaml records the
	// key's URI as ca_key. Without id and object in it, a random id and
	// object=jitgrant-ca are added. The JWT-SVID signing key is made in the
	// same token (object=jitgrant-jwt, a random id) instead of jwt.key, and
	// recorded as jwt_key. The audit key stays in audit.key.
	KMS   string
	Clock func() time.Time
	// jwtKeyURI, when set with KMS, is the JWT-SVID key's URI instead of
	// a new one (tests name the key to look for it).
	jwtKeyURI string
}

// Init creates a data directory: CA key (0600) and certificate, audit key
// pair, a deny-everything policy file and jitd.yaml. It refuses to touch a
// directory that already holds any of them. On failure it removes what it
// made, and the directory itself when it made it. With cfg.KMS the CA and
// JWT-SVID keys are made in a PKCS#11 token instead of ca.key and jwt.key,
// and deleted from it again on failure.
func Init(cfg InitConfig) (err error) {
	if cfg.Passphrase != nil && len(cfg.Passphrase) == 0 {
		return errors.New("jitd: init: the CA key passphrase is empty: give a non-empty passphrase, or none to leave the CA key unencrypted")
	}
	if cfg.KMS != "" && cfg.Passphrase != nil {
		return errors.New("jitd: init: --kms and --ca-passphrase-file both given: a CA key in a token is not encrypted with a passphrase " +
			"(the token's PIN guards it: pin-source in the URI); leave out --ca-passphrase-file")
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return fmt.Errorf("jitd: init: --trust-domain: %w", err)
	}
	kt := ca.KeyTypeECP256
	if cfg.KeyType != "" {
		if kt, err = ca.ParseKeyType(cfg.KeyType); err != nil {
			return fmt.Errorf("jitd: init: --key-type: %w", err)
		}
	}
	d := cfg.Dir
	for _, name := range []string{fileCACert, fileCAKey, fileAuditKey, fileAuditPub, fileJWTKey, fileMeta, dirDB} {
		if _, err := os.Stat(d.path(name)); err == nil {
			return fmt.Errorf("jitd: init: %s already exists; init never overwrites a data directory", d.path(name))
		}
	}
	caCfg := ca.Config{TrustDomain: td, KeyType: kt, TTL: cfg.CATTL, Clock: cfg.Clock}
	var (
		c      *ca.CA
		keyURI string
	)
	if cfg.KMS == "" {
		if c, err = ca.Generate(caCfg); err != nil {
			return fmt.Errorf("jitd: init: %w", err)
		}
	} else {
		if keyURI, err = ca.WithKeyObject(cfg.KMS); err != nil {
			return fmt.Errorf("jitd: init: --kms: %w", err)
		}
		// The pkcs11 package takes no deadline from a context.
		if c, err = ca.GenerateKMS(context.Background(), caCfg, keyURI); err != nil {
			return fmt.Errorf("jitd: init: --kms: %w", err)
		}
	}
	defer func() {
		if err != nil && keyURI != "" {
			if derr := c.DeleteKey(); derr != nil {
				err = fmt.Errorf("%w (and the CA key %s stays in the token: %v)", err, keyURI, derr)
			}
		}
		c.Close()
	}()
	var jwtURI string
	if keyURI != "" {
		if jwtURI = cfg.jwtKeyURI; jwtURI == "" {
			if jwtURI, err = ca.NewKeyURI(keyURI, jwtKeyObject); err != nil {
				return fmt.Errorf("jitd: init: --kms: %w", err)
			}
		}
		// err is Init's own: the deferred delete below reads it.
		var jk *ca.TokenKey
		if jk, err = createJWTKeyKMS(context.Background(), jwtURI, td, cfg.Clock); err != nil {
			return fmt.Errorf("jitd: init: --kms: %w", err)
		}
		defer func() {
			if err != nil {
				if derr := jk.Delete(); derr != nil {
					err = fmt.Errorf("%w (and the JWT key %s stays in the token: %v)", err, jwtURI, derr)
				}
			}
			jk.Close()
		}()
	}
	top, err := mkdirAll(string(d))
	if err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	// Leave nothing behind: the directories init made, or, in a directory
	// that was there, the files it made.
	var made []string
	for _, name := range []string{fileCACert, fileCAKey, fileAuditKey, fileAuditPub, fileJWTKey, fileMeta, filePolicy} {
		if _, serr := os.Lstat(d.path(name)); errors.Is(serr, fs.ErrNotExist) {
			made = append(made, name)
		}
	}
	defer func() {
		if err == nil {
			return
		}
		if top != "" {
			os.RemoveAll(top)
			return
		}
		for _, name := range made {
			os.Remove(d.path(name))
		}
	}()
	if keyURI != "" {
		err = c.WriteCertFile(d.path(fileCACert))
	} else {
		err = c.WriteFiles(d.path(fileCACert), d.path(fileCAKey), cfg.Passphrase)
	}
	if err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	skey, vkey, err := audit.GenerateKey("jitgrant-audit-" + td.Name())
	if err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	if err := audit.WritePrivateKey(d.path(fileAuditKey), skey); err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	if err := os.WriteFile(d.path(fileAuditPub), []byte(vkey+"\n"), 0o644); err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	if keyURI == "" {
		if _, _, err := d.jwtSigner(td, cfg.Clock); err != nil {
			return fmt.Errorf("jitd: init: %w", err)
		}
	}
	if _, err := os.Stat(d.path(filePolicy)); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(d.path(filePolicy), []byte(initialPolicy), 0o644); err != nil {
			return fmt.Errorf("jitd: init: %w", err)
		}
	}
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock
	}
	b, err := yaml.Marshal(meta{TrustDomain: td.Name(), Created: now().UTC(), CAKeyType: string(kt), CAKey: keyURI, JWTKey: jwtURI})
	if err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	// A PIN given as pin-value is in ca_key and jwt_key: then only the
	// owner reads it.
	metaMode := os.FileMode(0o644)
	if strings.Contains(keyURI, "pin-value=") {
		metaMode = 0o600
	}
	if err := os.WriteFile(d.path(fileMeta), b, metaMode); err != nil {
		return fmt.Errorf("jitd: init: %w", err)
	}
	return nil
}

// mkdirAll is os.MkdirAll(dir, 0o700) that returns the topmost directory it
// made ("" when dir was there).
func mkdirAll(dir string) (string, error) {
	dir = filepath.Clean(dir)
	top := ""
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		top = p
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return top, nil
}

// loadCA loads the data directory's CA: its key from ca.key, or from the
// PKCS#11 token that jitd.yaml's ca_key names. The CA holds the token open
// until its Close.
func (d DataDir) loadCA(ctx context.Context, td spiffeid.TrustDomain, passphrase []byte, clock func() time.Time) (*ca.CA, error) {
	m, _, err := d.readMeta()
	if err != nil {
		return nil, err
	}
	cfg := ca.Config{TrustDomain: td, Clock: clock}
	var c *ca.CA
	if m.CAKey == "" {
		c, err = ca.LoadFiles(cfg, d.path(fileCACert), d.path(fileCAKey), passphrase)
	} else if passphrase != nil {
		return nil, fmt.Errorf("jitd: the CA key is in a PKCS#11 token (ca_key in %s), so a CA passphrase does not apply: "+
			"leave out --ca-passphrase-file (the token's PIN comes from pin-source in ca_key)", d.path(fileMeta))
	} else if c, err = ca.LoadKMS(ctx, cfg, d.path(fileCACert), m.CAKey); err != nil {
		err = fmt.Errorf("%w (ca_key in %s)", err, d.path(fileMeta))
	}
	if err != nil {
		return nil, fmt.Errorf("jitd: %w", err)
	}
	return c, nil
}

// ReadPassphrase reads a passphrase file, without its trailing newline; ""
// means none. An empty file is an error.
func ReadPassphrase(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jitd: passphrase file: %w", err)
	}
	pass := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(pass) == 0 {
		return nil, fmt.Errorf("jitd: passphrase file %s is empty: write the passphrase in it, or leave out --ca-passphrase-file "+
			"(an unencrypted CA key, protected by its 0600 mode only)", path)
	}
	return pass, nil
}

// passphraseWarning returns a warning when the passphrase file at path is
// readable or writable by group or others, "" otherwise.
func passphraseWarning(path string) string {
	if path == "" {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("jitd: warning: passphrase file %s has mode %04o: others on this machine may read it; chmod 600 %s",
		path, fi.Mode().Perm(), path)
}
