package jitctl

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spf13/cobra"
)

// The files of a grant directory.
const (
	grantKeyFile    = "grant.key"  // the private key, PKCS#8, 0600
	grantCertFile   = "grant.pem"  // the grant SVID and its chain
	grantBundleFile = "bundle.pem" // the trust bundle
)

func defaultGrantDir(id string) string { return "grant-" + id }
func keyPath(dir string) string        { return filepath.Join(dir, grantKeyFile) }

func (a *app) fetchCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "fetch ID",
		Short: "Write an issued grant's certificate next to the key `jitctl request` made",
		Long: `Fetch the certificate chain of an issued grant and write it to DIR/grant.pem,
and the trust bundle to DIR/bundle.pem. DIR (--out, default ./grant-<ID>)
must hold grant.key, the key "jitctl request" made for this request.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeIDs(func(c *client) *pb.ListRequestsRequest {
			return &pb.ListRequestsRequest{States: []pb.State{pb.State_STATE_ISSUED}, Requester: c.id.String()}
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := requestID(args[0])
			if err != nil {
				return err
			}
			dir := out
			if dir == "" {
				dir = defaultGrantDir(id)
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				r, err := a.fetchInto(cmd.Context(), c, id, dir)
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, fetchJSON{Request: protoRaw(r), Dir: dir,
						KeyFile: keyPath(dir), CertFile: filepath.Join(dir, grantCertFile), BundleFile: filepath.Join(dir, grantBundleFile)})
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "the grant's directory, holding grant.key (default ./grant-<ID>)")
	_ = cmd.MarkFlagDirname("out")
	return cmd
}

// fetchJSON is the -o json output of fetch.
type fetchJSON struct {
	Request    json.RawMessage `json:"request"`
	Dir        string          `json:"dir"`
	KeyFile    string          `json:"key_file"`
	CertFile   string          `json:"cert_file"`
	BundleFile string          `json:"bundle_file"`
}

// protoRaw encodes an API object for embedding in jitctl's own JSON.
func protoRaw(r *pb.AccessRequest) json.RawMessage {
	b, err := marshalProto(r)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// fetchInto fetches grant id and writes its chain and bundle into dir, next
// to the key there, which the certificate must certify.
func (a *app) fetchInto(ctx context.Context, c *client, id, dir string) (*pb.AccessRequest, error) {
	key, err := readKey(dir)
	if err != nil {
		return nil, err
	}
	cctx, cancel := a.call(ctx)
	resp, err := c.api.FetchGrant(cctx, &pb.FetchGrantRequest{Id: id})
	cancel()
	if err != nil {
		return nil, err
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, fmt.Errorf("fetch %s: the issuer sent no certificate", id)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertChain()[0])
	if err != nil {
		return nil, fmt.Errorf("fetch %s: the issuer sent a bad certificate: %w", id, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("fetch %s: the certificate is not for the key in %s (was it made by another request?)", id, keyPath(dir))
	}
	certPath, bundlePath := filepath.Join(dir, grantCertFile), filepath.Join(dir, grantBundleFile)
	if err := writeFileAtomic(certPath, pemCerts(resp.GetCertChain()), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(bundlePath, pemCerts(resp.GetBundle()), 0o644); err != nil {
		return nil, err
	}
	if !a.json() {
		fmt.Fprintf(a.stdout, "issued %s, valid until %s\nwrote %s and %s (key: %s)\n", id,
			fmtTime(leaf.NotAfter), certPath, bundlePath, keyPath(dir))
	}
	return resp.GetRequest(), nil
}

func pemCerts(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

// writeKey creates dir (0700) and writes key to dir/grant.key (0600). It
// never overwrites a key.
func writeKey(dir string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the grant key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("grant directory: %w", err)
	}
	path := keyPath(dir)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: give each request its own --out directory", path)
		}
		return fmt.Errorf("grant key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("grant key: %w", err)
	}
	return nil
}

// readKey reads dir/grant.key.
func readKey(dir string) (crypto.Signer, error) {
	path := keyPath(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: the grant's certificate goes next to the key `jitctl request` made (see --out)", path)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PKCS#8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
	}
	return s, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so that readers never see half a file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
