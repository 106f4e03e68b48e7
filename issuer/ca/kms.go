package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"
	"go.step.sm/crypto/kms/uri"
	"go.step.sm/crypto/pemutil"
)

// pkcs11Scheme is the scheme of PKCS#11 key URIs (the kms package's stub
// without cgo lacks pkcs11.Scheme).
const pkcs11Scheme = string(apiv1.PKCS11)

// DefaultKeyObject is the PKCS#11 label (CKA_LABEL, the URI's "object") of
// the CA key [GenerateKMS] creates when the key URI names neither "id" nor
// "object".
const DefaultKeyObject = "jitgrant-ca"

// keyManager is an open PKCS#11 token and the URI of one key in it.
type keyManager struct {
	km     *pkcs11.PKCS11
	keyURI string
	token  string // names the token in errors
	what   string // names the key in errors: "CA key"
}

// openKeyManager opens the key manager keyURI names. Only PKCS#11 is built
// in: its package is called directly, not through the kms registry that
// blank imports fill. keyURI has the form
//
//	pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=jitgrant;id=01;object=jitgrant-ca?pin-source=/etc/jitd/pin
//
// that step-ca uses: module-path, token (or serial, or slot-id) and the PIN
// (pin-source, a file; or pin-value) choose and open the token, id and
// object the key.
func openKeyManager(ctx context.Context, keyURI string) (*keyManager, error) {
	if err := checkScheme(keyURI); err != nil {
		return nil, err
	}
	u, err := uri.ParseWithScheme(pkcs11Scheme, keyURI)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing key URI %s: %w", redactURI(keyURI), err)
	}
	token := describeToken(u)
	module := u.Get("module-path")
	if module == "" {
		return nil, fmt.Errorf("ca: key URI %s: module-path is required (the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so)", redactURI(keyURI))
	}
	if filepath.IsAbs(module) {
		if _, err := os.Stat(module); err != nil {
			return nil, fmt.Errorf("ca: PKCS#11 module-path %s: %w", module, err)
		}
	}
	if token == "" {
		return nil, fmt.Errorf("ca: key URI %s: token, serial or slot-id is required (which token of %s holds the key)", redactURI(keyURI), module)
	}
	opts := apiv1.Options{Type: apiv1.PKCS11, URI: keyURI}
	if path := u.Get("pin-source"); path != "" {
		// uri.Pin ignores a file it cannot read; here that is an error.
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("ca: reading the PIN of PKCS#11 token %s: pin-source: %w", token, err)
		}
		pin := string(bytes.TrimRightFunc(b, unicode.IsSpace))
		if pin == "" {
			return nil, fmt.Errorf("ca: reading the PIN of PKCS#11 token %s: pin-source %s is empty", token, path)
		}
		q := u.URL.Query()
		q.Del("pin-source")
		opts.URI = strings.SplitN(keyURI, "?", 2)[0]
		if len(q) > 0 {
			opts.URI += "?" + q.Encode()
		}
		opts.Pin = pin
	}
	km, err := pkcs11.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("ca: opening PKCS#11 token %s with module %s: %w", token, module, explainPKCS11(err))
	}
	return &keyManager{km: km, keyURI: keyURI, token: token, what: "CA key"}, nil
}

// checkScheme refuses a key URI of another scheme than pkcs11.
func checkScheme(keyURI string) error {
	scheme, _, _ := strings.Cut(keyURI, ":")
	if !strings.EqualFold(scheme, pkcs11Scheme) {
		return fmt.Errorf("ca: key URI scheme %q is not supported: only pkcs11: URIs (a PKCS#11 token, as step-ca uses) are built in", scheme)
	}
	return nil
}

// describeToken names the token u selects, for errors: its label, serial or
// slot, "" if none.
func describeToken(u *uri.URI) string {
	switch {
	case u.Get("token") != "":
		return fmt.Sprintf("%q", u.Get("token"))
	case u.Get("serial") != "":
		return "serial " + u.Get("serial")
	case u.Get("slot-id") != "":
		return "slot-id " + u.Get("slot-id")
	}
	return ""
}

// explainPKCS11 adds what a PKCS#11 return code means to err.
func explainPKCS11(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "CKR_PIN_INCORRECT"):
		return fmt.Errorf("wrong PIN: %w", err)
	case strings.Contains(msg, "CKR_PIN_LOCKED"):
		return fmt.Errorf("the PIN is locked (too many wrong PINs): %w", err)
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return fmt.Errorf("no such token in the module: %w", err)
	case strings.Contains(msg, "unable to load PKCS#11 module") || strings.Contains(msg, "dlopen"):
		return fmt.Errorf("the module cannot be loaded: %w", err)
	}
	return err
}

// redactURI returns keyURI without the value of pin-value, for errors.
func redactURI(keyURI string) string {
	base, query, ok := strings.Cut(keyURI, "?")
	if !ok {
		return keyURI
	}
	var parts []string
	for _, p := range strings.Split(query, "&") {
		if k, _, _ := strings.Cut(p, "="); k == "pin-value" {
			p = "pin-value=REDACTED"
		}
		parts = append(parts, p)
	}
	return base + "?" + strings.Join(parts, "&")
}

// objectName names the key keyURI selects in the token, for errors.
func objectName(keyURI string) string {
	u, err := uri.ParseWithScheme(pkcs11Scheme, keyURI)
	if err != nil {
		return redactURI(keyURI)
	}
	var parts []string
	if v := u.Get("object"); v != "" {
		parts = append(parts, "object="+v)
	}
	if v := u.GetEncoded("id"); len(v) > 0 {
		parts = append(parts, "id="+hex.EncodeToString(v))
	}
	return strings.Join(parts, ";")
}

// signer returns the signer of the token's key keyURI names.
func (k *keyManager) signer() (crypto.Signer, error) {
	s, err := k.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: k.keyURI})
	if err != nil {
		var nf apiv1.NotFoundError
		if errors.As(err, &nf) || strings.Contains(err.Error(), "not found") {
			return nil, fmt.Errorf("ca: %s %s not found in PKCS#11 token %s: %w", k.what, objectName(k.keyURI), k.token, err)
		}
		return nil, fmt.Errorf("ca: %s %s in PKCS#11 token %s: %w", k.what, objectName(k.keyURI), k.token, explainPKCS11(err))
	}
	return s, nil
}

// create generates a key of type kt in the token under keyURI and returns
// its signer.
func (k *keyManager) create(kt KeyType) (crypto.Signer, error) {
	var alg apiv1.SignatureAlgorithm
	switch kt.orDefault() {
	case KeyTypeECP256:
		alg = apiv1.ECDSAWithSHA256
	case KeyTypeECP384:
		alg = apiv1.ECDSAWithSHA384
	default:
		return nil, fmt.Errorf("ca: key type %s cannot be generated in a PKCS#11 token: use ec-p256 or ec-p384", kt)
	}
	if _, err := k.km.CreateKey(&apiv1.CreateKeyRequest{Name: k.keyURI, SignatureAlgorithm: alg}); err != nil {
		var exists apiv1.AlreadyExistsError
		if errors.As(err, &exists) {
			return nil, fmt.Errorf("ca: creating %s %s in PKCS#11 token %s: it exists already (give another id and object): %w", k.what, objectName(k.keyURI), k.token, fs.ErrExist)
		}
		return nil, fmt.Errorf("ca: creating %s %s in PKCS#11 token %s: %w", k.what, objectName(k.keyURI), k.token, explainPKCS11(err))
	}
	return k.signer()
}

// deleteKey deletes the key from the token.
func (k *keyManager) deleteKey() error {
	d, ok := any(k.km).(interface{ DeleteKey(string) error })
	if !ok {
		return errors.New("ca: deleting a key: PKCS#11 is not built in")
	}
	if err := d.DeleteKey(k.keyURI); err != nil {
		return fmt.Errorf("ca: deleting %s %s from PKCS#11 token %s: %w", k.what, objectName(k.keyURI), k.token, err)
	}
	return nil
}

// Close releases the token.
func (k *keyManager) Close() error {
	if err := k.km.Close(); err != nil {
		return fmt.Errorf("ca: closing PKCS#11 token %s: %w", k.token, err)
	}
	return nil
}

// WithKeyObject returns keyURI naming a key: as it is when it has an "id"
// or an "object" attribute already, otherwise with object=
// [DefaultKeyObject] and a random 8-byte id added, which [GenerateKMS]
// needs both of.
func WithKeyObject(keyURI string) (string, error) {
	if err := checkScheme(keyURI); err != nil {
		return "", err
	}
	u, err := uri.ParseWithScheme(pkcs11Scheme, keyURI)
	if err != nil {
		return "", fmt.Errorf("ca: parsing key URI %s: %w", redactURI(keyURI), err)
	}
	if u.Get("id") != "" || u.Get("object") != "" {
		return keyURI, nil
	}
	return NewKeyURI(keyURI, DefaultKeyObject)
}

// NewKeyURI returns the URI of a new key in the token keyURI names: keyURI
// with its "id" and "object" attributes, if any, replaced by a random 8-byte
// id and object; module, token and PIN stay. jitd makes the URI of its
// JWT-SVID key this way from the CA key's.
func NewKeyURI(keyURI, object string) (string, error) {
	if err := checkScheme(keyURI); err != nil {
		return "", err
	}
	if _, err := uri.ParseWithScheme(pkcs11Scheme, keyURI); err != nil {
		return "", fmt.Errorf("ca: parsing key URI %s: %w", redactURI(keyURI), err)
	}
	if object == "" || strings.ContainsAny(object, ";?&=%/") {
		return "", fmt.Errorf("ca: key object %q: want a non-empty label without ; ? & = %% or /", object)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("ca: key id: %w", err)
	}
	base, query, hasQuery := strings.Cut(keyURI, "?")
	scheme, path, _ := strings.Cut(base, ":")
	var attrs []string
	for _, a := range strings.Split(path, ";") {
		if k, _, _ := strings.Cut(a, "="); a != "" && k != "id" && k != "object" {
			attrs = append(attrs, a)
		}
	}
	attrs = append(attrs, "id="+hex.EncodeToString(id), "object="+object)
	out := scheme + ":" + strings.Join(attrs, ";")
	if hasQuery {
		out += "?" + query
	}
	return out, nil
}

// TokenKey is one key in a PKCS#11 token, with the token open: the CA's own
// handling of tokens (URIs, PIN files, errors naming what is wrong), for
// keys other than the CA's, such as jitd's JWT-SVID signing key. The token
// stays open until [TokenKey.Close]; signers it returned fail afterwards.
type TokenKey struct {
	k *keyManager
}

// OpenTokenKey opens the PKCS#11 token keyURI names, as [LoadKMS] does, for
// the key keyURI names; what names that key in errors (for example "JWT
// key"). It neither reads nor creates the key: see [TokenKey.Signer] and
// [TokenKey.Create].
func OpenTokenKey(ctx context.Context, keyURI, what string) (*TokenKey, error) {
	k, err := openKeyManager(ctx, keyURI)
	if err != nil {
		return nil, err
	}
	if what != "" {
		k.what = what
	}
	return &TokenKey{k: k}, nil
}

// Signer returns the signer of the key, which must exist in the token: a
// missing key is an error saying so.
func (t *TokenKey) Signer() (crypto.Signer, error) { return t.k.signer() }

// Create generates the key in the token, of type kt (ec-p256 or ec-p384),
// and returns its signer. The URI must name both an "id" and an "object"
// ([NewKeyURI]); an existing key of that id and object is an error wrapping
// [fs.ErrExist], and is left alone.
func (t *TokenKey) Create(kt KeyType) (crypto.Signer, error) { return t.k.create(kt) }

// Delete deletes the key from the token, for a caller undoing
// [TokenKey.Create].
func (t *TokenKey) Delete() error { return t.k.deleteKey() }

// Close releases the token.
func (t *TokenKey) Close() error { return t.k.Close() }

// GenerateKMS is [Generate] with the CA key created inside the PKCS#11
// token keyURI names (see [LoadKMS] for the URI) instead of in memory:
// cfg.KeyType ec-p256 or ec-p384 (a token has no Ed25519 through the kms
// package), and keyURI must name both an "id" and an "object" (see
// [WithKeyObject]). The key never leaves the token. The CA keeps the token
// open until [CA.Close]; it cannot be marshaled ([CA.WriteCertFile] saves
// its certificate). An existing key of that id and object is an error
// wrapping [fs.ErrExist], and is left alone.
func GenerateKMS(ctx context.Context, cfg Config, keyURI string) (_ *CA, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	k, err := openKeyManager(ctx, keyURI)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	signer, err := k.create(cfg.KeyType)
	if err != nil {
		return nil, err
	}
	c, err := generate(cfg, signer)
	if err != nil {
		// Leave no orphan key in the token.
		_ = k.deleteKey()
		return nil, err
	}
	c.closer = k
	return c, nil
}

// LoadKMS is [LoadFiles] with the CA key in a PKCS#11 token: keyURI names
// the module, the token, the PIN and the key, as step-ca's URIs do:
//
//	pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=jitgrant;id=7a01;object=jitgrant-ca?pin-source=/etc/jitd/pin
//
// pin-source is a file holding the PIN (trailing white space ignored);
// pin-value gives the PIN itself, in the URI. Signing happens in the token;
// the key never leaves it. Every check of [Load] applies. A wrong PIN, a
// missing token, a missing key or a module-path that does not exist is an
// error naming it. The CA keeps the token open until [CA.Close].
func LoadKMS(ctx context.Context, cfg Config, certPath, keyURI string) (_ *CA, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: reading CA certificate: %w", err)
	}
	certs, err := pemutil.ParseCertificateBundle(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing CA certificate %s: %w", certPath, err)
	}
	k, err := openKeyManager(ctx, keyURI)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	signer, err := k.signer()
	if err != nil {
		return nil, err
	}
	c, err := newCA(cfg, certs, signer)
	if err != nil {
		return nil, err
	}
	c.closer = k
	return c, nil
}

// Close releases what holds the CA key: the PKCS#11 token of a CA from
// [GenerateKMS] or [LoadKMS]; nothing for a key in memory. The CA cannot
// sign afterwards.
func (c *CA) Close() error {
	if c.closer == nil {
		return nil
	}
	return c.closer.Close()
}

// DeleteKey deletes the CA key from its PKCS#11 token, for a caller undoing
// [GenerateKMS] (jitd init when a later step fails). The CA cannot sign
// afterwards. For a key in memory it is an error.
func (c *CA) DeleteKey() error {
	k, ok := c.closer.(*keyManager)
	if !ok {
		return errors.New("ca: deleting the CA key: it is not in a PKCS#11 token")
	}
	return k.deleteKey()
}

// WriteCertFile writes the CA certificate followed by its chain as PEM to
// certPath (mode 0644), never overwriting: what a CA whose key is in a token
// saves.
func (c *CA) WriteCertFile(certPath string) error {
	certPEM, err := c.marshalCerts()
	if err != nil {
		return err
	}
	if _, err := os.Lstat(certPath); err == nil {
		return fmt.Errorf("ca: writing %s: %w", certPath, fs.ErrExist)
	}
	return writeNew(certPath, certPEM, 0o644)
}
