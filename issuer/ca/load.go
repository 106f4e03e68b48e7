package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jitgrant/jitgrant/internal/safefile"

	"go.step.sm/crypto/pemutil"
)

// Errors callers branch on, for example to prompt for a passphrase again.
var (
	// ErrPassphraseRequired means the CA key is encrypted and no
	// passphrase was given.
	ErrPassphraseRequired = errors.New("key is encrypted: a passphrase is required")
	// ErrWrongPassphrase means the passphrase does not decrypt the CA key.
	ErrWrongPassphrase = errors.New("wrong passphrase")
)

// Load returns the CA held in certPEM and keyPEM.
//
// certPEM holds the CA certificate, optionally followed by its chain up to
// and including a self-signed root: a CA that is an intermediate under an
// upstream root lists the intermediates in order and ends with the root.
// keyPEM holds the CA's private key in PKCS#8, SEC 1, PKCS#1 or OpenSSH form,
// either plain or encrypted (PKCS#8 PBES2 or legacy RFC 1423) with
// passphrase; a plain key ignores the passphrase.
//
// Load checks that the key matches the certificate, that every certificate
// of the chain is a CA (basic constraints cA=true, keyCertSign) signed by the
// next, that the chain verifies and is valid at cfg.Clock(), and that the CA
// certificate's URI SAN, if any, is the trust domain's SPIFFE ID.
// cfg.KeyType and cfg.TTL are ignored.
func Load(cfg Config, certPEM, keyPEM, passphrase []byte) (*CA, error) {
	return load(cfg, certPEM, keyPEM, passphrase, "CA certificate", "CA key")
}

// LoadFiles is [Load] with the PEM read from certPath and keyPath.
func LoadFiles(cfg Config, certPath, keyPath string, passphrase []byte) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: reading CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: reading CA key: %w", err)
	}
	return load(cfg, certPEM, keyPEM, passphrase, "CA certificate "+certPath, "CA key "+keyPath)
}

func load(cfg Config, certPEM, keyPEM, passphrase []byte, certName, keyName string) (*CA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.ParseCertificateBundle(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing %s: %w", certName, err)
	}
	signer, err := parseKey(keyPEM, passphrase, keyName)
	if err != nil {
		return nil, err
	}
	return newCA(cfg, certs, signer)
}

// parseKey parses the one PEM-encoded private key in keyPEM, decrypting it
// with passphrase when it is encrypted. name identifies the key in errors.
func parseKey(keyPEM, passphrase []byte, name string) (crypto.Signer, error) {
	block, rest := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("ca: parsing %s: no PEM block found", name)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("ca: parsing %s: more than one PEM block", name)
	}
	var (
		key any
		err error
	)
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED" {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("ca: %s: %w", name, ErrPassphraseRequired)
		}
		der, err := pemutil.DecryptPEMBlock(block, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("ca: decrypting %s: %w", name, ErrWrongPassphrase)
		}
		if err != nil {
			return nil, fmt.Errorf("ca: decrypting %s: %w", name, err)
		}
		// CBC padding catches most wrong passphrases; the rest decrypt to
		// noise that does not parse.
		if key, err = pemutil.ParseDER(der); err != nil {
			return nil, fmt.Errorf("ca: decrypting %s: %w (the decrypted bytes are not a key)", name, ErrWrongPassphrase)
		}
	} else if key, err = pemutil.Parse(keyPEM, pemutil.WithFilename(name)); err != nil {
		return nil, fmt.Errorf("ca: parsing %s: %w", name, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s holds a %T, not a private key that signs", name, key)
	}
	return signer, nil
}

// Marshal returns the CA certificate followed by its chain as PEM (what
// [Load] reads), and the CA key as PKCS#8 PEM. With a non-nil passphrase the
// key is encrypted (PBES2: PBKDF2-HMAC-SHA256 and AES-256-CBC); an empty,
// non-nil passphrase is an error rather than a silently plain key.
func (c *CA) Marshal(passphrase []byte) (certPEM, keyPEM []byte, err error) {
	if passphrase != nil && len(passphrase) == 0 {
		return nil, nil, errors.New("ca: marshaling CA key: empty passphrase (pass nil for a plain key)")
	}
	if c.closer != nil {
		return nil, nil, errors.New("ca: marshaling CA key: the key is in a PKCS#11 token and never leaves it (WriteCertFile saves the certificate)")
	}
	if certPEM, err = c.marshalCerts(); err != nil {
		return nil, nil, err
	}
	opts := []pemutil.Options{pemutil.WithPKCS8(true)}
	if passphrase != nil {
		opts = append(opts, pemutil.WithPassword(passphrase))
	}
	block, err := pemutil.Serialize(c.signer, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: marshaling CA key: %w", err)
	}
	return certPEM, pem.EncodeToMemory(block), nil
}

// marshalCerts returns the CA certificate followed by its chain as PEM.
func (c *CA) marshalCerts() ([]byte, error) {
	var certPEM []byte
	for _, cert := range c.all {
		block, err := pemutil.Serialize(cert)
		if err != nil {
			return nil, fmt.Errorf("ca: marshaling CA certificate: %w", err)
		}
		certPEM = append(certPEM, pem.EncodeToMemory(block)...)
	}
	return certPEM, nil
}

// WriteFiles writes [CA.Marshal]'s output to certPath (mode 0644) and keyPath
// (mode 0600). It never overwrites: if either file exists it writes nothing
// and returns an error wrapping [fs.ErrExist]. Each file appears complete
// or not at all (written to a temporary file, synced, then hard-linked into
// place); if the second file fails, the first is removed again.
func (c *CA) WriteFiles(certPath, keyPath string, passphrase []byte) error {
	if filepath.Clean(certPath) == filepath.Clean(keyPath) {
		return fmt.Errorf("ca: writing CA files: certificate and key paths are both %s", certPath)
	}
	certPEM, keyPEM, err := c.Marshal(passphrase)
	if err != nil {
		return err
	}
	for _, p := range []string{keyPath, certPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("ca: writing %s: %w", p, fs.ErrExist)
		}
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, certPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNew creates path with data and perm; it never overwrites nor leaves
// a partial file.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	if err := safefile.WriteNew(path, data, perm); err != nil {
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	return nil
}
