// Package cli holds what jitd and jitctl share on the command line: usage
// errors and exit statuses (0 success, 1 failure, 2 usage).
package cli

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError is a mistake in how a command was called.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a usage error.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// Args wraps a cobra argument check so that its failures are usage errors.
func Args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return Usage(check(cmd, args)) }
}

// Setup makes flag errors of root and its subcommands usage errors.
func Setup(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	root.SilenceUsage, root.SilenceErrors = true, true
}

// ExitStatus returns the process exit status for err: 0 for nil, 2 for a
// usage error (including cobra's unknown command and missing required flag
// errors), 1 for anything else.
func ExitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "required flag(s)", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return 2
		}
	}
	return 1
}
