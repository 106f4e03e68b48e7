package jitctl

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/cli"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// inspectJSON is the -o json output of inspect.
type inspectJSON struct {
	File        string     `json:"file"`
	SpiffeID    string     `json:"spiffe_id"` // "" when the leaf is not an X.509-SVID
	Serial      string     `json:"serial"`    // hex
	Issuer      string     `json:"issuer"`
	NotBefore   time.Time  `json:"not_before"`
	NotAfter    time.Time  `json:"not_after"`
	Valid       bool       `json:"valid"` // valid now (by this machine's clock)
	ChainLength int        `json:"chain_length"`
	Grant       *grantJSON `json:"grant"` // null for an identity SVID
}

// grantJSON is a decoded grant extension.
type grantJSON struct {
	ID        string      `json:"id"`
	Scopes    []scopeJSON `json:"scopes"`
	Approvers []string    `json:"approvers"`
	UseLimit  uint32      `json:"use_limit"`
}

type scopeJSON struct {
	Method    string   `json:"method"`
	Resources []string `json:"resources"`
}

func (a *app) inspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Decode a certificate's grant: ID, scopes, validity, approvers, use limit (offline)",
		Long: `Decode the first certificate of a PEM (or DER) file, such as grant.pem: its
SPIFFE ID, serial number and validity, and, for a grant SVID, the grant it
carries: ID, scopes with their resources, approvers and use limit. An
identity SVID carries no grant.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			chain, err := readCerts(args[0])
			if err != nil {
				return err
			}
			out, err := describeCert(args[0], chain, a.now())
			if err != nil {
				return err
			}
			if a.json() {
				return writeJSON(a.stdout, out)
			}
			return printInspect(a.stdout, out, a.now())
		},
	}
}

// readCerts reads the certificates of a PEM file (other blocks, such as a
// key, are skipped) or of a DER file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: no certificate found (want PEM CERTIFICATE blocks or DER)", path)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// describeCert decodes the leaf of chain.
func describeCert(file string, chain []*x509.Certificate, now time.Time) (*inspectJSON, error) {
	leaf := chain[0]
	out := &inspectJSON{
		File: file, Serial: fmt.Sprintf("%x", leaf.SerialNumber), Issuer: issuerName(leaf),
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
		Valid:       !now.Before(leaf.NotBefore) && !now.After(leaf.NotAfter),
		ChainLength: len(chain),
	}
	if id, err := x509svid.IDFromCert(leaf); err == nil {
		out.SpiffeID = id.String()
	}
	g, err := grant.FromCertificate(leaf)
	switch {
	case errors.Is(err, grant.ErrNoGrant):
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	gj := &grantJSON{ID: g.ID, UseLimit: g.UseLimit, Approvers: []string{}, Scopes: []scopeJSON{}}
	for _, s := range g.Scopes {
		gj.Scopes = append(gj.Scopes, scopeJSON{Method: s.Method, Resources: append([]string{}, s.Resources...)})
	}
	for _, ap := range g.Approvers {
		gj.Approvers = append(gj.Approvers, ap.String())
	}
	out.Grant = gj
	return out, nil
}

// issuerName is the issuer's distinguished name, as the certificate states
// it.
func issuerName(c *x509.Certificate) string {
	if s := c.Issuer.String(); s != "" {
		return s
	}
	return "(empty subject)"
}

func printInspect(w io.Writer, in *inspectJSON, now time.Time) error {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	id := in.SpiffeID
	if id == "" {
		id = "(none: not an X.509-SVID)"
	}
	row("spiffe id", id)
	row("serial", in.Serial)
	row("issuer", in.Issuer)
	row("not before", fmtTime(in.NotBefore))
	after := fmtTime(in.NotAfter)
	switch {
	case now.After(in.NotAfter):
		after += " (expired)"
	case now.Before(in.NotBefore):
		after += " (not yet valid)"
	default:
		after += fmt.Sprintf(" (valid for %s)", fmtDuration(in.NotAfter.Sub(now).Truncate(time.Second)))
	}
	row("not after", after)
	row("chain", fmt.Sprintf("%d certificate(s)", in.ChainLength))
	if in.Grant == nil {
		row("grant", "no grant (identity SVID)")
		return tw.Flush()
	}
	g := in.Grant
	row("grant", g.ID)
	for _, s := range g.Scopes {
		v := s.Method
		if len(s.Resources) == 0 {
			v += " (any resource)"
		} else {
			v += " @ " + strings.Join(s.Resources, ", ")
		}
		row("scope", v)
	}
	if len(g.Approvers) == 0 {
		row("approvers", "none (auto-approved or break-glass)")
	} else {
		row("approvers", strings.Join(g.Approvers, ", "))
	}
	row("use limit", fmtUseLimit(g.UseLimit))
	return tw.Flush()
}
