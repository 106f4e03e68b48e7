package jitctl

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jitgrant/jitgrant/internal/cli"
	"github.com/jitgrant/jitgrant/policy"
	"github.com/spf13/cobra"
)

func (a *app) policyCommand() *cobra.Command {
	var opts policy.Options
	cmd := groupCommand("policy", "Check a policy file and run its test cases (offline)",
		a.policyCheckCommand(&opts), a.policyTestCommand(&opts))
	cmd.PersistentFlags().DurationVar(&opts.MaxTTLCap, "max-ttl-cap", 0, "the global TTL cap jitd runs with (jitd serve --max-ttl-cap; default 1h)")
	return cmd
}

// problemJSON is one problem of a policy or cases file.
type problemJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// policyCheckJSON is the -o json output of policy check.
type policyCheckJSON struct {
	File     string        `json:"file"`
	OK       bool          `json:"ok"`
	SHA256   string        `json:"sha256"`
	Rules    []string      `json:"rules"`
	Warnings []string      `json:"warnings"`
	Problems []problemJSON `json:"problems"`
}

func (a *app) policyCheckCommand(opts *policy.Options) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file: OK with its rule count and hash, or every problem with its line",
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			if err := checkCap(opts.MaxTTLCap); err != nil {
				return err
			}
			p, err := policy.Load(file, *opts)
			if err != nil {
				return a.policyProblems(file, err, a.json())
			}
			out := policyCheckJSON{File: file, OK: true, SHA256: p.Hash(), Rules: p.RuleNames(), Warnings: p.Warnings(), Problems: []problemJSON{}}
			if out.Rules == nil {
				out.Rules = []string{}
			}
			if out.Warnings == nil {
				out.Warnings = []string{}
			}
			if a.json() {
				return writeJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "OK: %s: %d rules, sha256 %s\n", file, len(out.Rules), out.SHA256)
			for _, w := range out.Warnings {
				fmt.Fprintf(a.stdout, "warning: %s\n", w)
			}
			return nil
		},
	}
}

// checkCap checks --max-ttl-cap as jitd would.
func checkCap(d time.Duration) error {
	if d != 0 && (d < time.Second || d > policy.MaxTTLCapLimit) {
		return cli.Usage(fmt.Errorf("--max-ttl-cap %s: want 1s to %s", d, policy.MaxTTLCapLimit))
	}
	return nil
}

// policyProblems reports why a policy or cases file did not load: every
// problem of a *policy.FileError, one per line as "FILE:LINE:COL: path:
// message", or the error itself. It returns a reportedError for a FileError.
func (a *app) policyProblems(file string, err error, asJSON bool) error {
	var fe *policy.FileError
	if !errors.As(err, &fe) {
		return err
	}
	if fe.File != "" {
		file = fe.File
	}
	probs := make([]problemJSON, len(fe.Problems))
	for i, p := range fe.Problems {
		probs[i] = problemJSON{File: file, Line: p.Line, Column: p.Column, Path: p.Path, Message: p.Msg}
	}
	if asJSON {
		if err := writeJSON(a.stdout, policyCheckJSON{File: file, Rules: []string{}, Warnings: []string{}, Problems: probs}); err != nil {
			return err
		}
		return reported(ExitFailure, fmt.Sprintf("%s: %d problem(s)", file, len(probs)))
	}
	for _, p := range probs {
		loc := p.File
		if p.Line > 0 {
			loc += fmt.Sprintf(":%d:%d", p.Line, p.Column)
		}
		msg := p.Message
		if p.Path != "" {
			msg = p.Path + ": " + msg
		}
		fmt.Fprintf(a.stdout, "%s: %s\n", loc, msg)
	}
	fmt.Fprintf(a.stdout, "FAIL: %s: %d problem(s)\n", file, len(probs))
	return reported(ExitFailure, fmt.Sprintf("%s: %d problem(s)", file, len(probs)))
}

// caseJSON is the result of one policy test case.
type caseJSON struct {
	Name     string       `json:"name"`
	Line     int          `json:"line"`
	Pass     bool         `json:"pass"`
	Decision string       `json:"decision"` // e.g. "needs approval from 1 approver from [sre] (rule x)"
	Outcome  string       `json:"outcome"`  // denied, needs_approval, auto_approved, break_glass
	Rule     string       `json:"rule"`
	Factors  []factorJSON `json:"factors"`
	Reasons  []string     `json:"reasons"`
	Diff     []string     `json:"diff"` // "field: got X, want Y", empty when pass
}

type factorJSON struct {
	Count  int      `json:"count"`
	Groups []string `json:"groups"`
}

// policyTestJSON is the -o json output of policy test.
type policyTestJSON struct {
	File      string     `json:"file"`
	CasesFile string     `json:"cases_file"`
	Passed    int        `json:"passed"`
	Failed    int        `json:"failed"`
	Cases     []caseJSON `json:"cases"`
}

func (a *app) policyTestCommand(opts *policy.Options) *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE CASES",
		Short: "Run a cases file against a policy: PASS or FAIL per case, with what differs",
		Long: `Decide each request of the cases file CASES under the policy FILE and compare
with the case's expectation. Each case prints PASS or FAIL, what the policy
decided (auto-approved, needs approval from ..., denied because ...), and for
a failure, each difference as "field: got X, want Y". Exits 1 if any fails.`,
		Args: cli.Args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkCap(opts.MaxTTLCap); err != nil {
				return err
			}
			p, err := policy.Load(args[0], *opts)
			if err != nil {
				return a.policyProblems(args[0], err, a.json())
			}
			cases, err := policy.LoadCases(args[1])
			if err != nil {
				return a.policyProblems(args[1], err, a.json())
			}
			out := policyTestJSON{File: args[0], CasesFile: args[1], Cases: []caseJSON{}}
			for _, r := range p.RunCases(cases) {
				c := caseJSON{Name: r.Name, Line: r.Line, Pass: r.Pass, Decision: describeDecision(r.Got),
					Outcome: r.Got.Outcome.String(), Rule: r.Got.Rule, Factors: []factorJSON{},
					Reasons: append([]string{}, r.Got.Reasons...), Diff: []string{}}
				for _, f := range r.Got.Factors {
					c.Factors = append(c.Factors, factorJSON{Count: f.Count, Groups: f.Groups})
				}
				if r.Diff != "" {
					c.Diff = strings.Split(r.Diff, "\n")
				}
				if r.Pass {
					out.Passed++
				} else {
					out.Failed++
				}
				out.Cases = append(out.Cases, c)
			}
			if a.json() {
				if err := writeJSON(a.stdout, out); err != nil {
					return err
				}
			} else {
				for _, c := range out.Cases {
					verdict := "PASS"
					if !c.Pass {
						verdict = "FAIL"
					}
					fmt.Fprintf(a.stdout, "%s  %s (%s:%d): %s\n", verdict, c.Name, args[1], c.Line, c.Decision)
					for _, d := range c.Diff {
						fmt.Fprintf(a.stdout, "        %s\n", d)
					}
				}
				fmt.Fprintf(a.stdout, "%d passed, %d failed\n", out.Passed, out.Failed)
			}
			if out.Failed > 0 {
				return reported(ExitFailure, fmt.Sprintf("policy test: %d passed, %d failed", out.Passed, out.Failed))
			}
			return nil
		},
	}
}
