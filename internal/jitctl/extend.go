package jitctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	pb "github.com/jitgrant/jitgrant/proto/jitgrant/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
)

func (a *app) extendCommand() *cobra.Command {
	var (
		ttl, waitTimeout time.Duration
		reason           string
		wait             bool
	)
	cmd := &cobra.Command{
		Use:   "extend ID --ttl DURATION --reason TEXT",
		Short: "Ask to push your issued grant's end later",
		Long: `Ask to push your issued grant's end later by --ttl. The rule's extend: block
decides: refused (exit status 3), approved at once, or pending the rule's
approvers, who approve or deny it with jitctl approve/deny ID. Approved, the
grant keeps its ID and gets a new certificate ending later: the Workload API
pushes it to open streams; a grant requested with a CSR is fetched again with
jitctl fetch. Refused or denied, the grant ends as before.

With --wait, waits until the extension is decided: exit status 0 when
approved, 3 when denied, 4 when the grant ends first or --wait-timeout
passes.`,
		Args: cli.Args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completeIDs(func(c *client) *pb.ListRequestsRequest {
			return &pb.ListRequestsRequest{States: []pb.State{pb.State_STATE_ISSUED}, Requester: c.id.String()}
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := requestID(args[0])
			if err != nil {
				return err
			}
			if ttl <= 0 {
				return cli.Usage(fmt.Errorf("--ttl %s: required, a positive duration", ttl))
			}
			if waitTimeout < 0 {
				return cli.Usage(fmt.Errorf("--wait-timeout %s: must not be negative", waitTimeout))
			}
			return a.withClient(cmd.Context(), func(c *client) error {
				cctx, cancel := a.call(cmd.Context())
				defer cancel()
				r, err := c.api.ExtendGrant(cctx, &pb.ExtendGrantRequest{Id: id, Ttl: durationpb.New(ttl), Reason: reason})
				if err != nil {
					return err
				}
				var waitErr error
				if wait && pendingExtension(r) != nil {
					r, waitErr = a.waitExtended(cmd.Context(), c, r, waitTimeout)
				}
				if a.json() {
					if err := writeProto(a.stdout, r, false); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(a.stdout, summary(r))
					if x := lastExtension(r); x != nil {
						fmt.Fprintf(a.stdout, "extension %d (+%s): %s\n", x.GetSeq(), x.GetTtl().AsDuration(), x.GetState())
					}
				}
				return waitErr
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how much later the grant is to end (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the audit log")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the extension is approved or denied")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 0, "give up waiting after this long (0: until it is decided or the grant ends)")
	return cmd
}

// lastExtension returns r's latest extension, or nil.
func lastExtension(r *pb.AccessRequest) *pb.Extension {
	if xs := r.GetExtensions(); len(xs) > 0 {
		return xs[len(xs)-1]
	}
	return nil
}

// pendingExtension returns r's pending extension, or nil.
func pendingExtension(r *pb.AccessRequest) *pb.Extension {
	if x := lastExtension(r); x.GetState() == "PENDING" {
		return x
	}
	return nil
}

// waitExtended waits until the pending extension of grant r is decided, or
// the grant ends. It returns the grant as last seen, and an error with the
// exit status to use when the extension was not approved.
func (a *app) waitExtended(ctx context.Context, c *client, r *pb.AccessRequest, timeout time.Duration) (*pb.AccessRequest, error) {
	id, seq := r.GetId(), lastExtension(r).GetSeq()
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	last := r
	fmt.Fprintf(a.stderr, "waiting: extension %d of grant %s awaits review\n", seq, id)
	err := a.watch(wctx, c, &pb.WatchRequestsRequest{Requester: c.id.String()}, func(got *pb.AccessRequest) (bool, error) {
		if got.GetId() != id {
			return false, nil
		}
		last = got
		return got.GetState() != pb.State_STATE_ISSUED || pendingExtension(got) == nil, nil
	})
	if err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			return last, withStatus(ExitTimedOut, fmt.Errorf("grant %s: gave up after --wait-timeout %s; extension %d is still pending", id, timeout, seq))
		}
		return last, err
	}
	if last.GetState() != pb.State_STATE_ISSUED {
		return last, withStatus(endedStatus(last.GetState()), errors.New(ended(last)))
	}
	if x := lastExtension(last); x.GetState() != "APPROVED" {
		return last, withStatus(ExitDenied, fmt.Errorf("grant %s: extension %d was %s; the grant ends as before, at %s", id, seq, x.GetState(), fmtTS(last.GetNotAfter())))
	}
	return last, nil
}
