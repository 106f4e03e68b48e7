package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/examples/workload/access"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
	scopes, err := access.ParseScopes(cfg.scopes)
	if err != nil {
		return err
	}
	if cfg.out == nil {
		cfg.out = io.Discard
	}
	client, err := access.Dial(ctx, cfg.workloadSocket, cfg.issuer)
	if err != nil {
		return err
	}
	defer client.Close()

	req, err := client.Request(ctx, access.Request{Scopes: scopes, TTL: cfg.ttl, Reason: cfg.reason})
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "request %s by %s: %s\n", req.GetId(), client.ID, access.StateName(req.GetState()))
	if req.GetState() != pb.State_STATE_ISSUED {
		if req, err = client.WaitIssued(ctx, req, cfg.waitTimeout); err != nil {
			return err
		}
		fmt.Fprintf(cfg.out, "request %s: %s\n", req.GetId(), access.StateName(req.GetState()))
	}

	// The grant SVID arrives on the Workload API with the grant ID as hint.
	conn, err := client.Connect(ctx, req.GetId(), ledgerID, cfg.ledger, cfg.waitTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	ledger := bankv1.NewLedgerClient(conn)

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
