// Package jitctl is the jitgrant command line for requesters, approvers,
// auditors and admins. cmd/jitctl is a thin wrapper over [Main].
//
// # Identity
//
// Every command that talks to the issuer authenticates with an X.509-SVID
// over mTLS, taken from, in order: --identity DIR (a directory written by
// `jitd enroll --out`: svid.pem, svid.key, bundle.pem), the three files
// --cert, --key and --bundle, or the SPIFFE Workload API at
// $SPIFFE_ENDPOINT_SOCKET. The server must present the SPIFFE ID --server-id,
// by default spiffe://<the caller's trust domain>/jitd. The offline commands
// (inspect, policy, audit verify and audit prove) need no identity.
//
// # Output
//
// Output is a human table by default. With -o json every command prints one
// JSON object (watch prints JSON Lines, one object per event). Objects of the
// issuer API (AccessRequest, CreateRequestResponse, ReviewResponse,
// ListRequestsResponse, RequestEvent) are encoded with protojson using the
// .proto field names (snake_case: "id", "state", "create_time",
// "awaiting_my_review"), enum values by name ("STATE_PENDING",
// "OUTCOME_NEEDS_APPROVAL"), timestamps as RFC 3339 strings, durations as
// "600s", and every field present, unset ones as their zero value or null.
// The objects jitctl builds itself (inspect, policy check, policy test,
// audit verify, audit prove, audit export --out) use snake_case names too.
// Field names are stable: renaming one is a breaking change.
//
// # Exit status
//
// 0 success, 1 any other failure (a failing policy test, a bad audit
// export), 2 usage error, 3 denied or refused (by policy or the issuer, or a
// waited-for request that ended DENIED, CANCELED or REVOKED), 4 timed out
// (--timeout, --wait-timeout, or a request that ended TIMED_OUT or EXPIRED),
// 5 issuer unreachable, 6 not found: see [ExitOK] and the constants after
// it. An error is printed as one line, "jitctl: <code>: <message>" for a
// gRPC error; with -o json it is one JSON object on standard error.
package jitctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	"github.com/spf13/cobra"
)

// Defaults of the global flags.
const (
	DefaultServer  = "127.0.0.1:8443"
	DefaultTimeout = 30 * time.Second
	// EnvServer, when set, is the default of --server.
	EnvServer = "JITCTL_SERVER"
	// EnvWorkloadAPI is the SPIFFE Workload API address go-spiffe reads.
	EnvWorkloadAPI = "SPIFFE_ENDPOINT_SOCKET"
)

// app holds the global flags and the output streams of one invocation.
type app struct {
	stdout, stderr io.Writer

	server   string
	serverID string
	identity string
	cert     string
	key      string
	bundle   string
	output   string
	timeout  time.Duration

	// now is the clock of offline checks (certificate validity); tests may
	// replace it.
	now func() time.Time
}

// NewCommand returns the jitctl command line writing to stdout and stderr.
// Subcommands are registered here, in one place.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	root, _ := newCommand(stdout, stderr)
	return root
}

func newCommand(stdout, stderr io.Writer) (*cobra.Command, *app) {
	a := &app{stdout: stdout, stderr: stderr, now: time.Now}
	root := &cobra.Command{
		Use:   "jitctl",
		Short: "Ask for, review and audit just-in-time access grants for gRPC services",
		Long: `jitctl talks to jitd, the jitgrant issuer: request access to gRPC methods for
a few minutes, approve or deny others' requests, fetch grant certificates,
and export and verify the audit log. inspect, policy and audit verify/prove
work offline.

` + exitStatusHelp,
		PersistentPreRunE: a.setup,
	}
	cli.Setup(root)
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.PersistentFlags()
	f.StringVar(&a.server, "server", DefaultServer, "issuer API address (env "+EnvServer+")")
	f.StringVar(&a.serverID, "server-id", "", "the issuer's SPIFFE ID (default spiffe://<trust domain>/jitd)")
	f.StringVar(&a.identity, "identity", "", "`DIR` made by 'jitd enroll --out' (svid.pem, svid.key, bundle.pem)")
	f.StringVar(&a.cert, "cert", "", "X.509-SVID certificate chain `FILE` (PEM); with --key and --bundle")
	f.StringVar(&a.key, "key", "", "private key `FILE` of --cert (PEM)")
	f.StringVar(&a.bundle, "bundle", "", "trust bundle `FILE` (PEM) to verify the issuer with")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&a.timeout, "timeout", DefaultTimeout, "timeout of each call to the issuer")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.MarkPersistentFlagDirname("identity")

	root.AddCommand(
		a.requestCommand(),
		a.listCommand(),
		a.showCommand(),
		a.reviewCommand(true),
		a.reviewCommand(false),
		a.cancelCommand(),
		a.revokeCommand(),
		a.extendCommand(),
		a.fetchCommand(),
		a.watchCommand(),
		a.inspectCommand(),
		a.policyCommand(),
		a.auditCommand(),
	)
	// cobra's own completion command (bash, zsh, fish, powershell), added
	// now rather than at Execute so that it is strict like the others.
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		strictGroup(c)
	}
	return root, a
}

// setup checks and completes the global flags before any subcommand runs.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	if !cmd.Flags().Changed("server") {
		if s := os.Getenv(EnvServer); s != "" {
			a.server = s
		}
	}
	switch a.output {
	case "table", "json":
	default:
		return cli.Usage(fmt.Errorf("-o/--output %q: want table or json", a.output))
	}
	if a.timeout <= 0 {
		return cli.Usage(fmt.Errorf("--timeout %s: must be positive", a.timeout))
	}
	return nil
}

// json reports whether -o json was given.
func (a *app) json() bool { return a.output == "json" }

// groupCommand returns a command that only holds subcommands.
func groupCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.AddCommand(subs...)
	strictGroup(cmd)
	return cmd
}

// strictGroup makes running a command that only holds subcommands, alone or
// with an unknown subcommand, a usage error rather than a help page with
// exit status 0.
func strictGroup(cmd *cobra.Command) {
	var names []string
	for _, s := range cmd.Commands() {
		names = append(names, s.Name())
	}
	cmd.Args = cli.Args(cobra.NoArgs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return cli.Usage(fmt.Errorf("%s: missing subcommand (%s)", cmd.CommandPath(), strings.Join(names, ", ")))
	}
}

// Main runs the jitctl command line and returns the process exit status
// (ExitOK, ExitFailure, ExitUsage, ...).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, a := newCommand(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitStatus(err)
	if a.json() {
		writeErrorJSON(stderr, err, code)
		return code
	}
	var re *reportedError
	if !errors.As(err, &re) {
		fmt.Fprintln(stderr, errorLine(err))
	}
	if code == ExitUsage && cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// errorLine renders err as one line: "jitctl: <code>: <message>" for a gRPC
// status, "jitctl: <message>" otherwise.
func errorLine(err error) string {
	if st, ok := grpcStatus(err); ok {
		// Keep what the command added in front of the status, without
		// grpc-go's "rpc error: code = ... desc = " rendering.
		prefix := strings.TrimSuffix(err.Error(), st.Err().Error())
		code := st.Code().String()
		// The issuer's messages may start with the code in words
		// ("permission denied: ..."); the code is already there.
		msg := strings.TrimPrefix(st.Message(), codeWords(code)+": ")
		return "jitctl: " + code + ": " + prefix + oneLine(msg)
	}
	return "jitctl: " + oneLine(err.Error())
}

// codeWords spells a code name in lower-case words: "PermissionDenied" is
// "permission denied".
func codeWords(code string) string {
	var b strings.Builder
	for i, r := range code {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// oneLine joins the lines of s with "; ".
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}
