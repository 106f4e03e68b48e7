package jitctl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/durationpb"
)

// stateNames returns the --state values, in lifecycle order.
func stateNames() []string {
	return []string{"pending", "approved", "issued", "expired", "revoked", "denied", "canceled", "timed_out"}
}

// parseStates parses --state values: names from stateNames, in any case,
// with "-" for "_" and an optional STATE_ prefix.
func parseStates(values []string) ([]pb.State, error) {
	var out []pb.State
	for _, v := range values {
		name := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(v), "-", "_"))
		name = strings.TrimPrefix(name, "STATE_")
		n, ok := pb.State_value["STATE_"+name]
		if !ok || n == 0 {
			return nil, cli.Usage(fmt.Errorf("--state %q: want one of %s", v, strings.Join(stateNames(), ", ")))
		}
		out = append(out, pb.State(n))
	}
	return out, nil
}

// requestID checks a request ID argument.
func requestID(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, " /\t\n") {
		return "", cli.Usage(fmt.Errorf("%q is not a request ID", s))
	}
	return s, nil
}

// selectFlags are the request filters list and watch share.
type selectFlags struct {
	states       []string
	requester    string
	mineToReview bool
	needsReview  bool
}

func (s *selectFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&s.states, "state", nil, "only requests in these states (repeatable or comma-separated): "+strings.Join(stateNames(), ", "))
	f.StringVar(&s.requester, "requester", "", "only requests of this SPIFFE ID")
	f.BoolVar(&s.mineToReview, "mine-to-review", false, "only requests waiting for my review: pending ones, and break-glass grants to review after the fact")
	f.BoolVar(&s.needsReview, "needs-review", false, "only break-glass grants whose review after the fact is outstanding")
	_ = cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(stateNames(), cobra.ShellCompDirectiveNoFileComp))
}

func (s *selectFlags) parse() ([]pb.State, error) {
	states, err := parseStates(s.states)
	if err != nil {
		return nil, err
	}
	if s.requester != "" {
		if _, err := spiffeid.FromString(s.requester); err != nil {
			return nil, cli.Usage(fmt.Errorf("--requester %q: %w", s.requester, err))
		}
	}
	return states, nil
}

func (a *app) listCommand() *cobra.Command {
	var sel selectFlags
	var limit int32
	var allPages bool
	var pageToken string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the requests you may see, newest first",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			states, err := sel.parse()
			if err != nil {
				return err
			}
			if limit < 0 || limit > 500 {
				return cli.Usage(fmt.Errorf("--limit %d: want 1 to 500 (0: the issuer's default)", limit))
			}
			in := &pb.ListRequestsRequest{States: states, Requester: sel.requester, AwaitingMyReview: sel.mineToReview,
				NeedsReview: sel.needsReview, PageSize: limit, PageToken: pageToken}
			return a.withClient(cmd.Context(), func(c *client) error {
				all := &pb.ListRequestsResponse{}
				for {
					cctx, cancel := a.call(cmd.Context())
					page, err := c.api.ListRequests(cctx, in)
					cancel()
					if err != nil {
						return err
					}
					all.Requests = append(all.Requests, page.GetRequests()...)
					all.NextPageToken = page.GetNextPageToken()
					if !allPages || page.GetNextPageToken() == "" {
						break
					}
					in.PageToken = page.GetNextPageToken()
				}
				if a.json() {
					return writeProto(a.stdout, all, false)
				}
				if len(all.Requests) == 0 {
					fmt.Fprintln(a.stderr, "no requests")
					return nil
				}
				if err := printRequests(a.stdout, all.Requests); err != nil {
					return err
				}
				if all.NextPageToken != "" {
					fmt.Fprintf(a.stderr, "more: --page-token %s (or --all-pages)\n", all.NextPageToken)
				}
				return nil
			})
		},
	}
	sel.register(cmd)
	f := cmd.Flags()
	f.Int32Var(&limit, "limit", 0, "at most this many per page (default 50, at most 500)")
	f.BoolVar(&allPages, "all-pages", false, "follow every page")
	f.StringVar(&pageToken, "page-token", "", "start at this page (from a previous list)")
	return cmd
}

func (a *app) showCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "show ID",
		Short:             "Show one request: its state, reviews and what it still needs",
		Args:              cli.Args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeIDs(func(*client) *pb.ListRequestsRequest { return &pb.ListRequestsRequest{} }),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := requestID(args[0])
			if err != nil {
				return err
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				cctx, cancel := a.call(cmd.Context())
				defer cancel()
				r, err := c.api.GetRequest(cctx, &pb.GetRequestRequest{Id: id})
				if err != nil {
					return err
				}
				if a.json() {
					return writeProto(a.stdout, r, false)
				}
				return printRequest(a.stdout, r)
			})
		},
	}
}

// reviewCommand returns approve (approve true) or deny.
func (a *app) reviewCommand(approve bool) *cobra.Command {
	var comment string
	var revoke bool
	use, short := "approve ID", "Approve a pending request, or a break-glass grant after the fact"
	if !approve {
		use, short = "deny ID", "Deny a pending request, which ends it, or a break-glass grant after the fact"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `. It prints "counted" when the review counted, or why it did not
(for example a second approval by the same person), then where the request
stands. A break-glass grant is reviewed after the fact, even once expired or
revoked: its flag clears when the rule's approvals are met, or when an
eligible denial concludes the review.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeIDs(func(*client) *pb.ListRequestsRequest {
			return &pb.ListRequestsRequest{AwaitingMyReview: true}
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := requestID(args[0])
			if err != nil {
				return err
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				cctx, cancel := a.call(cmd.Context())
				defer cancel()
				in := &pb.ReviewRequest{Id: id, Comment: comment, Revoke: revoke}
				var resp *pb.ReviewResponse
				if approve {
					resp, err = c.api.ApproveRequest(cctx, in)
				} else {
					resp, err = c.api.DenyRequest(cctx, in)
				}
				if err != nil {
					return err
				}
				if a.json() {
					return writeProto(a.stdout, resp, false)
				}
				if resp.GetCounted() {
					fmt.Fprintln(a.stdout, "counted")
				} else {
					fmt.Fprintln(a.stdout, "not counted:", resp.GetNote())
				}
				fmt.Fprintln(a.stdout, summary(resp.GetRequest()))
				if resp.GetRevoked() {
					fmt.Fprintf(a.stdout, "revoked; acknowledged by %d of %d verifiers following revocations\n",
						resp.GetVerifiersAcknowledged(), resp.GetVerifiersFollowing())
				} else if revoke && resp.GetCounted() {
					fmt.Fprintln(a.stdout, "nothing to revoke: no live grant")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "a comment recorded with the review")
	if !approve {
		cmd.Flags().BoolVar(&revoke, "revoke", false, "also revoke the grant at once (a break-glass grant under review)")
	}
	return cmd
}

func (a *app) cancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Withdraw your own pending (or not yet started) request",
		Args:  cli.Args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeIDs(func(c *client) *pb.ListRequestsRequest {
			return &pb.ListRequestsRequest{States: []pb.State{pb.State_STATE_PENDING, pb.State_STATE_APPROVED}, Requester: c.id.String()}
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.endRequest(cmd, args[0], func(ctx context.Context, c *client, id string) (*pb.AccessRequest, error) {
				return c.api.CancelRequest(ctx, &pb.CancelRequestRequest{Id: id})
			})
		},
	}
}

func (a *app) revokeCommand() *cobra.Command {
	var reason string
	var ackWait time.Duration
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "End an approved or issued grant early",
		Long: `End an approved or issued grant early. Its requester, anyone who may approve
its rule, and holders of the revoke_any permission may revoke it.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeIDs(func(*client) *pb.ListRequestsRequest {
			return &pb.ListRequestsRequest{States: []pb.State{pb.State_STATE_APPROVED, pb.State_STATE_ISSUED}}
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := requestID(args[0])
			if err != nil {
				return err
			}
			if ackWait < 0 || ackWait > 10*time.Second {
				return cli.Usage(fmt.Errorf("--ack-timeout %s: want 0 to 10s", ackWait))
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				cctx, cancel := a.call(cmd.Context())
				defer cancel()
				res, err := c.api.RevokeGrant(cctx, &pb.RevokeGrantRequest{Id: id, Reason: reason, AckTimeout: durationpb.New(ackWait)})
				if err != nil {
					return err
				}
				if a.json() {
					return writeProto(a.stdout, res, false)
				}
				fmt.Fprintln(a.stdout, summary(res.GetRequest()))
				fmt.Fprintf(a.stdout, "acknowledged by %d of %d verifiers following revocations\n",
					res.GetVerifiersAcknowledged(), res.GetVerifiersFollowing())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit log")
	cmd.Flags().DurationVar(&ackWait, "ack-timeout", 2*time.Second, "how long to wait for verifiers to acknowledge (0: do not wait)")
	return cmd
}

// endRequest runs cancel or revoke and prints the result.
func (a *app) endRequest(cmd *cobra.Command, arg string, call func(context.Context, *client, string) (*pb.AccessRequest, error)) error {
	id, err := requestID(arg)
	if err != nil {
		return err
	}
	return a.withClient(cmd.Context(), func(c *client) error {
		cctx, cancel := a.call(cmd.Context())
		defer cancel()
		r, err := call(cctx, c, id)
		if err != nil {
			return err
		}
		if a.json() {
			return writeProto(a.stdout, r, false)
		}
		fmt.Fprintln(a.stdout, summary(r))
		return nil
	})
}

func (a *app) watchCommand() *cobra.Command {
	var sel selectFlags
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream changes to the requests you may see until interrupted",
		Long: `Print the current requests that match, then every change, until interrupted.
A grant whose expiring notice was sent (its end is near) shows "expiring, ends
<time>" once per end. With -o json, one RequestEvent object per line (JSON
Lines); the notice sets the request's expiring_notified to the end it is for.`,
		Args: cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			states, err := sel.parse()
			if err != nil {
				return err
			}
			in := &pb.WatchRequestsRequest{States: states, Requester: sel.requester, AwaitingMyReview: sel.mineToReview, NeedsReview: sel.needsReview}
			ctx := cmd.Context()
			lines := newWatchLines()
			return a.withClient(ctx, func(c *client) error {
				err := a.watch(ctx, c, in, func(r *pb.AccessRequest) (bool, error) {
					if a.json() {
						return false, writeProto(a.stdout, &pb.RequestEvent{Request: r}, true)
					}
					_, err := fmt.Fprintln(a.stdout, lines.line(r))
					return false, err
				})
				if ctx.Err() != nil {
					return nil // interrupted: the normal end of a watch
				}
				return err
			})
		},
	}
	sel.register(cmd)
	return cmd
}

// watchLines renders watch's text lines, remembering for each grant the
// end its expiring notice was last shown for, so that the notice shows once
// per end (not on the grant's every later change, nor again when the
// stream reconnects and resends the current requests).
type watchLines struct {
	expiring map[string]time.Time
}

func newWatchLines() *watchLines { return &watchLines{expiring: map[string]time.Time{}} }

// line returns r's line: update time, ID, state, requester and scopes, and
// "expiring, ends <end>" the first time r carries an expiring notice for
// its end.
func (w *watchLines) line(r *pb.AccessRequest) string {
	s := fmt.Sprintf("%s %s %-9s %s %s", fmtTS(r.GetUpdateTime()), r.GetId(), stateName(r.GetState()), r.GetRequester(), fmtScopes(r.GetScopes()))
	if r.GetState() != pb.State_STATE_ISSUED {
		delete(w.expiring, r.GetId())
		return s
	}
	if n := r.GetExpiringNotified(); n != nil {
		if end := n.AsTime(); !w.expiring[r.GetId()].Equal(end) {
			w.expiring[r.GetId()] = end
			s += " expiring, ends " + fmtTS(n)
		}
	}
	return s
}

// completeIDs completes request IDs from the issuer, listing what sel
// selects; on any error it offers nothing.
func (a *app) completeIDs(sel func(*client) *pb.ListRequestsRequest) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if err := a.setup(cmd, args); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), min(a.timeout, 5*time.Second))
		defer cancel()
		var out []cobra.Completion
		err := a.withClient(ctx, func(c *client) error {
			resp, err := c.api.ListRequests(ctx, sel(c))
			if err != nil {
				return err
			}
			for _, r := range resp.GetRequests() {
				out = append(out, cobra.CompletionWithDesc(r.GetId(), stateName(r.GetState())+" "+fmtScopes(r.GetScopes())))
			}
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
