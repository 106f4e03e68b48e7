package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/grant"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// config is the workload's command line.
type config struct {
	workloadSocket string
	issuer         string
	ledger         string
	ledgerID       string
	scopes         []string
	ttl            time.Duration
	reason         string
	call           string
	account, to    string
	amountCents    int64
	waitTimeout    time.Duration
	out            io.Writer
}

// The ledger methods --call names.
var calls = map[string]string{
	"balance":  bankv1.Ledger_GetBalance_FullMethodName,
	"refund":   bankv1.Ledger_Refund_FullMethodName,
	"transfer": bankv1.Ledger_Transfer_FullMethodName,
}

// run asks for a grant, waits until it is issued and calls the ledger with it.
func run(ctx context.Context, cfg config) error {
	method, ok := calls[cfg.call]
	switch {
	case !ok:
		return fmt.Errorf("--call %q: want balance, refund or transfer", cfg.call)
	case cfg.account == "":
		return errors.New("--account is required")
	case cfg.ledgerID == "":
		return errors.New("--ledger-id is required")
	case cfg.workloadSocket == "":
		return errors.New("--workload-socket (or SPIFFE_ENDPOINT_SOCKET) is required")
	}
	ledgerID, err := spiffeid.FromString(cfg.ledgerID)
	if err != nil {
		return fmt.Errorf("--ledger-id: %w", err)
	}
	if len(cfg.scopes) == 0 {
		cfg.scopes = []string{method}
		if cfg.call != "balance" {
			cfg.scopes[0] += "@" + cfg.account
		}
	}
	scopes, err := parseScopes(cfg.scopes)
	if err != nil {
		return err
	}
	if cfg.out == nil {
		cfg.out = io.Discard
	}
	client := workloadapi.WithClientOptions(workloadapi.WithAddr(cfg.workloadSocket))

	// The identity SVID, to call jitd with.
	source, err := workloadapi.NewX509Source(ctx, client)
	if err != nil {
		return fmt.Errorf("workload API: %w", err)
	}
	defer source.Close()
	self, err := source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("workload API: %w", err)
	}
	jitd := spiffeid.RequireFromPath(self.ID.TrustDomain(), "/jitd")
	cc, err := grpc.NewClient(cfg.issuer, grpc.WithTransportCredentials(
		verifier.ClientCredentials(source, source, tlsconfig.AuthorizeID(jitd))))
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	defer cc.Close()
	api := pb.NewIssuerClient(cc)

	res, err := api.CreateRequest(ctx, &pb.CreateRequestRequest{Scopes: scopes, Ttl: durationpb.New(cfg.ttl), Reason: cfg.reason})
	if err != nil {
		return fmt.Errorf("create request: %w", err)
	}
	req := res.GetRequest()
	fmt.Fprintf(cfg.out, "request %s by %s: %s\n", req.GetId(), self.ID, stateName(req.GetState()))
	if req.GetState() != pb.State_STATE_ISSUED {
		if req, err = waitIssued(ctx, api, req, cfg.waitTimeout); err != nil {
			return err
		}
		fmt.Fprintf(cfg.out, "request %s: %s\n", req.GetId(), stateName(req.GetState()))
	}

	// The grant SVID arrives on the Workload API with the grant ID as hint.
	opts, grantSource, err := verifier.WorkloadDialOptions(ctx, req.GetId(), tlsconfig.AuthorizeID(ledgerID), client)
	if err != nil {
		return fmt.Errorf("workload API: %w", err)
	}
	defer grantSource.Close()
	if err := waitSVID(ctx, grantSource, cfg.waitTimeout); err != nil {
		return fmt.Errorf("grant %s: %w", req.GetId(), err)
	}
	lcc, err := grpc.NewClient(cfg.ledger, opts...)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer lcc.Close()
	ledger := bankv1.NewLedgerClient(lcc)

	var bal *bankv1.Balance
	switch cfg.call {
	case "balance":
		bal, err = ledger.GetBalance(ctx, &bankv1.GetBalanceRequest{Account: cfg.account})
	case "refund":
		bal, err = ledger.Refund(ctx, &bankv1.RefundRequest{Account: cfg.account, AmountCents: cfg.amountCents})
	case "transfer":
		bal, err = ledger.Transfer(ctx, &bankv1.TransferRequest{Account: cfg.account, To: cfg.to, AmountCents: cfg.amountCents})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	fmt.Fprintf(cfg.out, "%s with grant %s: %s balance %d cents\n", method, req.GetId(), bal.GetAccount(), bal.GetBalanceCents())
	return nil
}

// waitIssued follows the requester's requests until req is issued, and fails
// when it ends any other way or timeout passes.
func waitIssued(ctx context.Context, api pb.IssuerClient, req *pb.AccessRequest, timeout time.Duration) (*pb.AccessRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := api.WatchRequests(ctx, &pb.WatchRequestsRequest{Requester: req.GetRequester()})
	if err != nil {
		return nil, fmt.Errorf("watch requests: %w", err)
	}
	for {
		if err := check(req); err != nil {
			return nil, err
		}
		if req.GetState() == pb.State_STATE_ISSUED {
			return req, nil
		}
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("request %s: still %s after %v", req.GetId(), stateName(req.GetState()), timeout)
			}
			return nil, fmt.Errorf("watch requests: %w", err)
		}
		if ev.GetRequest().GetId() == req.GetId() {
			req = ev.GetRequest()
		}
	}
}

// check fails for a request that ended without being issued.
func check(req *pb.AccessRequest) error {
	switch req.GetState() {
	case pb.State_STATE_PENDING, pb.State_STATE_APPROVED, pb.State_STATE_ISSUED:
		return nil
	}
	return fmt.Errorf("request %s: %s", req.GetId(), stateName(req.GetState()))
}

// waitSVID waits until the source holds the grant SVID.
func waitSVID(ctx context.Context, source *workloadapi.X509Source, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := source.GetX509SVID()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SVID on the Workload API after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func stateName(s pb.State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

// parseScopes turns --scope values, /pkg.Service/Method[@resource], into
// scopes, one per method with its resources.
func parseScopes(values []string) ([]*pb.Scope, error) {
	var out []*pb.Scope
	byMethod := map[string]*pb.Scope{}
	for _, v := range values {
		method, res, hasRes := strings.Cut(strings.TrimSpace(v), "@")
		if err := grant.ValidateMethod(method); err != nil {
			return nil, fmt.Errorf("--scope %q: %w", v, err)
		}
		if hasRes {
			if err := grant.ValidateResourcePattern(res); err != nil {
				return nil, fmt.Errorf("--scope %q: %w", v, err)
			}
		}
		s, seen := byMethod[method]
		if !seen {
			s = &pb.Scope{Method: method}
			byMethod[method] = s
			out = append(out, s)
		} else if hasRes != (len(s.Resources) > 0) {
			return nil, fmt.Errorf("--scope %q: %s is given both with and without resources", v, method)
		}
		if hasRes && !slices.Contains(s.Resources, res) {
			s.Resources = append(s.Resources, res)
		}
	}
	return out, nil
}
