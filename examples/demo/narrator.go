package main

import (
	"fmt"
	"io"
	"strings"
)

// narrator tells the story in plain words, with colour on a terminal.
type narrator struct {
	out   io.Writer
	color bool
}

// ANSI styles.
const (
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	green  = "\x1b[32m"
	red    = "\x1b[31m"
	cyan   = "\x1b[36m"
	yellow = "\x1b[33m"
	reset  = "\x1b[0m"
)

func (n *narrator) style(s, text string) string {
	if !n.color {
		return text
	}
	return s + text + reset
}

func (n *narrator) banner() {
	fmt.Fprintln(n.out, n.style(bold, "jitgrant demo: just-in-time access to gRPC methods, start to finish"))
	fmt.Fprintln(n.out, n.style(dim, "Everything runs in this process on loopback: jitd (the issuer), the ledger service and the payments workload."))
	fmt.Fprintln(n.out)
	fmt.Fprintln(n.out, n.style(bold, "Setting up"))
}

// step announces step i.
func (n *narrator) step(i int, title string) {
	fmt.Fprintf(n.out, "\n%s %s\n", n.style(bold+cyan, fmt.Sprintf("%2d.", i)), n.style(bold, title))
}

// say narrates what is happening.
func (n *narrator) say(format string, args ...any) {
	fmt.Fprintf(n.out, "    %s\n", fmt.Sprintf(format, args...))
}

// saw narrates an observed outcome.
func (n *narrator) saw(format string, args ...any) {
	fmt.Fprintf(n.out, "    %s %s\n", n.style(green, "→"), fmt.Sprintf(format, args...))
}

// command shows a command line as the person (or "" for anyone) would
// type it.
func (n *narrator) command(who, line string) {
	fmt.Fprintf(n.out, "    %s\n", n.style(yellow, who+"$ "+line))
}

// output shows a command's output, indented.
func (n *narrator) output(s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line != "" {
			fmt.Fprintf(n.out, "      %s\n", n.style(dim, line))
		}
	}
}

func (n *narrator) ok() { fmt.Fprintf(n.out, "    %s\n", n.style(green, "✔ as expected")) }

// fail reports that what was narrated did not happen and returns the error.
func (n *narrator) fail(where string, err error) error {
	fmt.Fprintf(n.out, "    %s %v\n", n.style(bold+red, "✘ FAILED:"), err)
	return fmt.Errorf("%s: %w", where, err)
}

func (n *narrator) done() {
	fmt.Fprintln(n.out)
	fmt.Fprintln(n.out, n.style(bold+green, "Every step behaved as narrated."))
	fmt.Fprintln(n.out, "Next: the README's real setup (jitd init, serve, enroll, a policy of your own), and verifier.ServerOptions in your service.")
}
