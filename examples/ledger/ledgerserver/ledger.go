// Package ledgerserver is the example service of examples/ledger:
// bank.v1.Ledger with balances in memory, behind a jitgrant verifier that
// takes the request's account as the resource of Transfer and Refund.
//
// The command in examples/ledger runs it from flags; tests and other
// examples start it in-process with Start.
package ledgerserver

import (
	"context"
	"log/slog"
	"sync"

	bankv1 "github.com/jitgrant/jitgrant/examples/ledger/proto/bank/v1"
	"github.com/jitgrant/jitgrant/verifier"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ResourceFields is the verifier configuration of bank.v1.Ledger: the
// request field holding the resource of each method that has one.
func ResourceFields() map[string]string {
	return map[string]string{
		bankv1.Ledger_Transfer_FullMethodName: "account",
		bankv1.Ledger_Refund_FullMethodName:   "account",
	}
}

// Service implements bank.v1.Ledger over balances kept in memory. Accounts
// start at zero. It is safe for concurrent use.
type Service struct {
	bankv1.UnimplementedLedgerServer

	log      *slog.Logger
	mu       sync.Mutex
	balances map[string]int64
}

// NewService returns an empty ledger that logs every change to log (nil
// means slog.Default()).
func NewService(log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{log: log, balances: map[string]int64{}}
}

// Balance returns the balance of account in cents.
func (s *Service) Balance(account string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.balances[account]
}

// GetBalance implements bank.v1.Ledger.
func (s *Service) GetBalance(ctx context.Context, in *bankv1.GetBalanceRequest) (*bankv1.Balance, error) {
	if in.GetAccount() == "" {
		return nil, status.Error(codes.InvalidArgument, "account is required")
	}
	b := s.Balance(in.GetAccount())
	s.log.InfoContext(ctx, "balance read", append(who(ctx), "account", in.GetAccount())...)
	return &bankv1.Balance{Account: in.GetAccount(), BalanceCents: b}, nil
}

// Transfer implements bank.v1.Ledger: it moves amount_cents from account to
// to, refusing to overdraw account.
func (s *Service) Transfer(ctx context.Context, in *bankv1.TransferRequest) (*bankv1.Balance, error) {
	switch {
	case in.GetAccount() == "" || in.GetTo() == "":
		return nil, status.Error(codes.InvalidArgument, "account and to are required")
	case in.GetAccount() == in.GetTo():
		return nil, status.Error(codes.InvalidArgument, "account and to must differ")
	case in.GetAmountCents() <= 0:
		return nil, status.Error(codes.InvalidArgument, "amount_cents must be positive")
	}
	s.mu.Lock()
	from := s.balances[in.GetAccount()]
	if from < in.GetAmountCents() {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "insufficient funds in %s", in.GetAccount())
	}
	from -= in.GetAmountCents()
	s.balances[in.GetAccount()] = from
	s.balances[in.GetTo()] += in.GetAmountCents()
	s.mu.Unlock()
	s.log.InfoContext(ctx, "transfer", append(who(ctx), "account", in.GetAccount(), "to", in.GetTo(), "amount_cents", in.GetAmountCents())...)
	return &bankv1.Balance{Account: in.GetAccount(), BalanceCents: from}, nil
}

// Refund implements bank.v1.Ledger: it credits amount_cents to account.
func (s *Service) Refund(ctx context.Context, in *bankv1.RefundRequest) (*bankv1.Balance, error) {
	switch {
	case in.GetAccount() == "":
		return nil, status.Error(codes.InvalidArgument, "account is required")
	case in.GetAmountCents() <= 0:
		return nil, status.Error(codes.InvalidArgument, "amount_cents must be positive")
	}
	s.mu.Lock()
	s.balances[in.GetAccount()] += in.GetAmountCents()
	b := s.balances[in.GetAccount()]
	s.mu.Unlock()
	s.log.InfoContext(ctx, "refund", append(who(ctx), "account", in.GetAccount(), "amount_cents", in.GetAmountCents())...)
	return &bankv1.Balance{Account: in.GetAccount(), BalanceCents: b}, nil
}

// who returns the log attributes naming the caller and its grant.
func who(ctx context.Context) []any {
	var attrs []any
	if id, ok := verifier.PeerIDFromContext(ctx); ok {
		attrs = append(attrs, "caller", id.String())
	}
	if g, ok := verifier.GrantFromContext(ctx); ok {
		attrs = append(attrs, "grant", g.ID)
		if len(g.Approvers) > 0 {
			approvers := make([]string, len(g.Approvers))
			for i, a := range g.Approvers {
				approvers[i] = a.String()
			}
			attrs = append(attrs, "approvers", approvers)
		}
	}
	return attrs
}
