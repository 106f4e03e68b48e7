package jitctl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/grant"
	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// requestFlags are the flags of `jitctl request`.
type requestFlags struct {
	scopes      []string
	ttl         time.Duration
	reason      string
	start       string
	useLimit    uint32
	breakGlass  bool
	dryRun      bool
	wait        bool
	waitTimeout time.Duration
	out         string
	delivery    string
}

func (a *app) requestCommand() *cobra.Command {
	var f requestFlags
	cmd := &cobra.Command{
		Use:   "request --scope /pkg.Svc/Method[@resource] [--scope ...] --reason TEXT",
		Short: "Ask for access to gRPC methods for a while",
		Long: `Ask for a grant: access to gRPC methods, optionally limited to resources, for
--ttl. Policy decides whether it is auto-approved, needs approvals, or is
denied; --dry-run prints that decision and its reasons, stores nothing, and
exits 3 when policy would deny the request.

--delivery says how the grant reaches you. "files" (the default with
--identity or --cert): jitctl makes an ECDSA P-256 key here, writes it (0600)
to DIR/grant.key and sends only a CSR, so the key never leaves this machine;
once the request is issued, "jitctl fetch" (or --wait) writes the certificate
chain to DIR/grant.pem and the trust bundle to DIR/bundle.pem. DIR is --out,
by default ./grant-<request ID>. "workload-api" (the default when the
identity comes from $SPIFFE_ENDPOINT_SOCKET): no CSR is sent; jitd makes the
grant's key and serves the grant SVID on its Workload API next to your
identity, with the request ID as its hint (what
verifier.WorkloadDialOptions looks for); --wait waits until the Workload API
serves it. A grant requested with a CSR is never served on the Workload API.

The request ID is printed first, on a line of its own. --wait waits until
the request is issued and fetches the grant; it says why and exits 3 when the
request is denied or canceled, 4 when it times out or --wait-timeout passes
(see jitctl --help for every exit status).`,
		Example: `  jitctl request --scope '/bank.v1.Ledger/Refund@accounts/42' --ttl 10m --reason INC-42
  jitctl request --scope /bank.v1.Ledger/GetBalance --ttl 5m --wait
  SPIFFE_ENDPOINT_SOCKET=unix:///run/jitgrant/workload.sock jitctl request --scope /bank.v1.Ledger/GetBalance --ttl 5m --wait
  jitctl request --scope '/bank.v1.Ledger/*' --break-glass --reason 'INC-7: ledger down'`,
		Args: cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := f.input(a.now())
			if err != nil {
				return err
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				return a.runRequest(cmd.Context(), c, &f, in)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.scopes, "scope", nil, "method to ask for, /pkg.Service/Method or /pkg.Service/*, with an optional @resource pattern (repeatable)")
	fl.DurationVar(&f.ttl, "ttl", 15*time.Minute, "how long the grant lasts once it starts")
	fl.StringVar(&f.reason, "reason", "", "why you need it, e.g. a ticket")
	fl.StringVar(&f.start, "start", "", "when the grant starts: RFC 3339 time or +DURATION (default: once approved)")
	fl.Uint32Var(&f.useLimit, "use-limit", 0, "how many calls the grant allows (0: any until expiry)")
	fl.BoolVar(&f.breakGlass, "break-glass", false, "emergency access: issued at once where policy allows, flagged for review")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the policy's decision and its reasons; store nothing")
	fl.BoolVar(&f.wait, "wait", false, "wait until the request is issued, then fetch the grant")
	fl.DurationVar(&f.waitTimeout, "wait-timeout", 0, "give up waiting after this long (0: until the request ends)")
	fl.StringVar(&f.out, "out", "", "directory for grant.key, grant.pem and bundle.pem (default ./grant-<id>)")
	fl.StringVar(&f.delivery, "delivery", deliveryAuto, "how the grant is delivered: files (key made here, CSR sent), workload-api (no CSR; served on jitd's Workload API), or auto: workload-api when the identity comes from $"+EnvWorkloadAPI)
	_ = cmd.MarkFlagRequired("scope")
	_ = cmd.MarkFlagDirname("out")
	return cmd
}

// input checks the flags and builds the API request (without its CSR).
func (f *requestFlags) input(now time.Time) (*pb.CreateRequestRequest, error) {
	scopes, err := parseScopes(f.scopes)
	if err != nil {
		return nil, err
	}
	if f.ttl <= 0 {
		return nil, cli.Usage(fmt.Errorf("--ttl %s: must be positive", f.ttl))
	}
	if f.dryRun && f.wait {
		return nil, cli.Usage(fmt.Errorf("--dry-run and --wait exclude each other"))
	}
	if f.waitTimeout < 0 {
		return nil, cli.Usage(fmt.Errorf("--wait-timeout %s: must not be negative", f.waitTimeout))
	}
	switch f.delivery {
	case deliveryAuto, deliveryFiles:
	case deliveryWorkloadAPI:
		if f.out != "" {
			return nil, cli.Usage(fmt.Errorf("--out and --delivery %s exclude each other: a Workload API grant has no files", deliveryWorkloadAPI))
		}
	default:
		return nil, cli.Usage(fmt.Errorf("--delivery %q: want %s, %s or %s", f.delivery, deliveryAuto, deliveryFiles, deliveryWorkloadAPI))
	}
	in := &pb.CreateRequestRequest{
		Scopes: scopes, Ttl: durationpb.New(f.ttl), Reason: f.reason, DryRun: f.dryRun,
		BreakGlass: f.breakGlass, UseLimit: f.useLimit,
	}
	if f.start != "" {
		if f.breakGlass {
			return nil, cli.Usage(fmt.Errorf("--start and --break-glass exclude each other: break-glass starts at once"))
		}
		t, err := parseStart(f.start, now)
		if err != nil {
			return nil, err
		}
		in.StartTime = timestamppb.New(t)
	}
	return in, nil
}

// parseScopes parses --scope values, "method" or "method@resource". The
// same method given with several resources becomes one scope with those
// resources, in order; exact repeats are dropped. Errors are usage errors
// that name the flag.
func parseScopes(values []string) ([]*pb.Scope, error) {
	if len(values) == 0 {
		return nil, cli.Usage(fmt.Errorf("--scope: at least one is required"))
	}
	var out []*pb.Scope
	byMethod := map[string]*pb.Scope{}
	anyResource := map[string]bool{} // methods given without a resource
	for _, v := range values {
		method, res, hasRes := strings.Cut(strings.TrimSpace(v), "@")
		if err := grant.ValidateMethod(method); err != nil {
			return nil, cli.Usage(fmt.Errorf("--scope %q: %s", v, strings.TrimPrefix(err.Error(), "grant: invalid: ")))
		}
		if hasRes {
			if err := grant.ValidateResourcePattern(res); err != nil {
				return nil, cli.Usage(fmt.Errorf("--scope %q: after @: %s", v, strings.TrimPrefix(err.Error(), "grant: invalid: ")))
			}
		}
		s, seen := byMethod[method]
		if !seen {
			s = &pb.Scope{Method: method}
			byMethod[method] = s
			out = append(out, s)
		}
		switch {
		case !hasRes:
			if len(s.Resources) > 0 {
				return nil, cli.Usage(fmt.Errorf("--scope %q: %s is also given with resources (%s); without @ it means any resource: give one or the other", v, method, strings.Join(s.Resources, ", ")))
			}
			anyResource[method] = true
		case anyResource[method]:
			return nil, cli.Usage(fmt.Errorf("--scope %q: %s is also given without @resource, which means any resource: give one or the other", v, method))
		case !slices.Contains(s.Resources, res):
			if len(s.Resources) == grant.MaxResources {
				return nil, cli.Usage(fmt.Errorf("--scope %q: more than %d resources for %s", v, grant.MaxResources, method))
			}
			s.Resources = append(s.Resources, res)
		}
	}
	if len(out) > grant.MaxScopes {
		return nil, cli.Usage(fmt.Errorf("--scope: %d methods, at most %d", len(out), grant.MaxScopes))
	}
	return out, nil
}

// parseStart parses --start: an RFC 3339 time, or "+DURATION" from now.
func parseStart(s string, now time.Time) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil || d <= 0 {
			return time.Time{}, cli.Usage(fmt.Errorf("--start %q: want an RFC 3339 time or +DURATION such as +10m", s))
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, cli.Usage(fmt.Errorf("--start %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z, or +DURATION such as +10m", s))
	}
	return t, nil
}

// runRequest creates the request and, as asked, waits for it and fetches
// its grant.
func (a *app) runRequest(ctx context.Context, c *client, f *requestFlags, in *pb.CreateRequestRequest) error {
	if in.DryRun {
		return a.dryRun(ctx, c, in)
	}
	switch f.delivery {
	case deliveryWorkloadAPI:
		if !c.ident.fromWorkloadAPI {
			return cli.Usage(fmt.Errorf("--delivery %s needs the identity from the Workload API ($%s), not --identity or --cert", deliveryWorkloadAPI, EnvWorkloadAPI))
		}
		return a.requestOnWorkloadAPI(ctx, c, f, in)
	case deliveryAuto:
		if c.ident.fromWorkloadAPI && f.out == "" {
			return a.requestOnWorkloadAPI(ctx, c, f, in)
		}
	}
	key, csr, err := newKeyAndCSR(c.id)
	if err != nil {
		return err
	}
	in.Csr = csr
	// With --out, the key is written before the request exists, so that a
	// directory problem costs nothing; without it the directory is named
	// after the request.
	dir := f.out
	if dir != "" {
		if err := writeKey(dir, key); err != nil {
			return err
		}
	}
	cctx, cancel := a.call(ctx)
	resp, err := c.api.CreateRequest(cctx, in)
	cancel()
	if err != nil {
		if dir != "" {
			os.Remove(keyPath(dir)) // no request, no use for its key
		}
		return err
	}
	r := resp.GetRequest()
	if dir == "" {
		dir = defaultGrantDir(r.GetId())
		if err := writeKey(dir, key); err != nil {
			// Without its key the grant is useless: withdraw the request.
			cctx, cancel := a.call(ctx)
			_, cerr := c.api.CancelRequest(cctx, &pb.CancelRequestRequest{Id: r.GetId()})
			cancel()
			if cerr == nil {
				return fmt.Errorf("%w; request %s canceled", err, r.GetId())
			}
			return fmt.Errorf("%w; request %s could not be canceled either: %v", err, r.GetId(), cerr)
		}
	}
	if !a.json() {
		fmt.Fprintln(a.stdout, r.GetId())
		fmt.Fprintf(a.stdout, "state: %s\n", stateName(r.GetState()))
		io.WriteString(a.stdout, decisionFromProto(resp.GetDecision()).Explain())
		fmt.Fprintf(a.stdout, "key: %s\n", keyPath(dir))
	}
	var waitErr error
	if f.wait && r.GetState() != pb.State_STATE_ISSUED {
		r, waitErr = a.waitIssued(ctx, c, r.GetId(), f.waitTimeout)
	}
	if waitErr == nil && r.GetState() == pb.State_STATE_ISSUED {
		var fr *pb.AccessRequest
		if fr, waitErr = a.fetchInto(ctx, c, r.GetId(), dir); fr != nil {
			r = fr
		}
	}
	if a.json() {
		resp.Request = r
		if err := writeProto(a.stdout, resp, false); err != nil {
			return err
		}
	}
	return waitErr
}

// requestOnWorkloadAPI creates a request without a CSR, so that jitd serves
// its grant on the Workload API, and, with --wait, waits until it does.
func (a *app) requestOnWorkloadAPI(ctx context.Context, c *client, f *requestFlags, in *pb.CreateRequestRequest) error {
	cctx, cancel := a.call(ctx)
	resp, err := c.api.CreateRequest(cctx, in)
	cancel()
	if err != nil {
		return err
	}
	r := resp.GetRequest()
	if !a.json() {
		fmt.Fprintln(a.stdout, r.GetId())
		fmt.Fprintf(a.stdout, "state: %s\n", stateName(r.GetState()))
		io.WriteString(a.stdout, decisionFromProto(resp.GetDecision()).Explain())
		fmt.Fprintf(a.stdout, "delivery: the Workload API at %s, hint %s\n", os.Getenv(EnvWorkloadAPI), r.GetId())
	}
	var waitErr error
	if f.wait && r.GetState() != pb.State_STATE_ISSUED {
		r, waitErr = a.waitIssued(ctx, c, r.GetId(), f.waitTimeout)
	}
	if f.wait && waitErr == nil && r.GetState() == pb.State_STATE_ISSUED {
		if waitErr = a.waitOnWorkloadAPI(ctx, r.GetId()); waitErr == nil && !a.json() {
			fmt.Fprintf(a.stdout, "issued: the Workload API serves grant %s (hint %s)\n", r.GetId(), r.GetId())
		}
	}
	if a.json() {
		resp.Request = r
		if err := writeProto(a.stdout, resp, false); err != nil {
			return err
		}
	}
	return waitErr
}

func (a *app) dryRun(ctx context.Context, c *client, in *pb.CreateRequestRequest) error {
	cctx, cancel := a.call(ctx)
	resp, err := c.api.CreateRequest(cctx, in)
	cancel()
	if err != nil {
		return err
	}
	if a.json() {
		if err := writeProto(a.stdout, resp, false); err != nil {
			return err
		}
	} else {
		io.WriteString(a.stdout, decisionFromProto(resp.GetDecision()).Explain())
	}
	if resp.GetDecision().GetOutcome() == pb.Outcome_OUTCOME_DENIED {
		return reported(ExitDenied, "dry run: policy would deny this request")
	}
	return nil
}

// newKeyAndCSR makes the grant's key pair and a CSR (DER) whose one URI
// SAN is id.
func newKeyAndCSR(id spiffeid.ID) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the grant key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making the CSR: %w", err)
	}
	return key, csr, nil
}
