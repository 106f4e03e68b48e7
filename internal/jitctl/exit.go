package jitctl

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/jitgrant/jitgrant/internal/cli"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit statuses of jitctl. Scripts branch on them, so they are part of the
// command line's interface: exitStatus is the one place that picks them, and
// exitStatusHelp documents them (jitctl --help and README.md).
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailure: any failure not listed below.
	ExitFailure = 1
	// ExitUsage: a bad flag, argument or combination of them.
	ExitUsage = 2
	// ExitDenied: policy or the issuer said no.
	ExitDenied = 3
	// ExitTimedOut: time ran out.
	ExitTimedOut = 4
	// ExitUnreachable: no working connection to the issuer.
	ExitUnreachable = 5
	// ExitNotFound: the issuer has no such request.
	ExitNotFound = 6
)

// exitStatusHelp is the exit status table of jitctl --help; README.md
// repeats it.
const exitStatusHelp = `Exit status:
  0  success
  1  any other failure: a bad file, a failed check (policy test, audit
     verify), an interrupted wait
  2  usage error: a bad flag or argument
  3  denied or refused: the issuer answered PermissionDenied,
     Unauthenticated, FailedPrecondition or InvalidArgument; a dry run that
     policy denies; request --wait on a request that ended DENIED, CANCELED
     or REVOKED
  4  timed out: a call ran past --timeout (DeadlineExceeded); request --wait
     past --wait-timeout, or on a request that ended TIMED_OUT or EXPIRED
  5  issuer unreachable: no connection to --server, or no TLS handshake with
     it (Unavailable)
  6  not found: no such request (NotFound)
With -o json, a failure ends standard error with one JSON object on a line:
{"error": "...", "exit_status": 3, "reason": "denied", "code": "PermissionDenied"}
("code" is the gRPC status code, present when the issuer answered with one).`

// exitReasons names the exit statuses in -o json errors.
var exitReasons = map[int]string{
	ExitFailure: "failure", ExitUsage: "usage", ExitDenied: "denied", ExitTimedOut: "timed_out",
	ExitUnreachable: "unreachable", ExitNotFound: "not_found",
}

// exitError gives an error the exit status it calls for.
type exitError struct {
	status int
	err    error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withStatus marks err with an exit status.
func withStatus(status int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{status: status, err: err}
}

// reportedError is a failure the command has already explained on standard
// output: Main prints nothing more, or, with -o json, the error object on
// standard error.
type reportedError struct {
	status int
	msg    string
}

func (e *reportedError) Error() string { return e.msg }

// reported returns a reportedError.
func reported(status int, msg string) error { return &reportedError{status: status, msg: msg} }

// grpcStatus returns the gRPC status in err's chain.
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus(), true
	}
	return nil, false
}

// exitStatus returns the exit status for err. It is the only place that maps
// errors, and the gRPC codes among them, to exit statuses.
func exitStatus(err error) int {
	var ee *exitError
	var re *reportedError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.status
	case errors.As(err, &re):
		return re.status
	case cli.ExitStatus(err) == 2:
		return ExitUsage
	}
	if st, ok := grpcStatus(err); ok {
		switch st.Code() {
		case codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition, codes.InvalidArgument:
			return ExitDenied
		case codes.DeadlineExceeded:
			return ExitTimedOut
		case codes.Unavailable:
			return ExitUnreachable
		case codes.NotFound:
			return ExitNotFound
		}
		return ExitFailure
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTimedOut
	}
	return ExitFailure
}

// errorJSON is the -o json error object on standard error.
type errorJSON struct {
	Error      string `json:"error"`
	ExitStatus int    `json:"exit_status"`
	Reason     string `json:"reason"`         // failure, usage, denied, timed_out, unreachable or not_found
	Code       string `json:"code,omitempty"` // the gRPC status code, when the issuer answered with one
}

// writeErrorJSON writes err as one errorJSON line.
func writeErrorJSON(w io.Writer, err error, code int) {
	out := errorJSON{Error: strings.TrimPrefix(errorLine(err), "jitctl: "), ExitStatus: code, Reason: exitReasons[code]}
	if st, ok := grpcStatus(err); ok {
		out.Code = st.Code().String()
	}
	b, _ := json.Marshal(out)
	w.Write(append(b, '\n'))
}
