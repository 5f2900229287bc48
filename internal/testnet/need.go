package testnet

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Integration applies MAILEDGE_INTEGRATION, the switch of the tests that
// start external programs (Dovecot, Postfix, redis-server, pebble,
// openssl, curl; see integration/doc.go), to the test: "off" skips it, and
// so does -short unless the switch says "require". It reports whether a
// program that is missing must fail the test ("require", which CI sets
// after installing them all) rather than skip it. what names the program,
// for the skip message.
func Integration(tb testing.TB, what string) (require bool) {
	tb.Helper()
	mode := strings.ToLower(os.Getenv("MAILEDGE_INTEGRATION"))
	switch {
	case mode == "off" || mode == "0" || mode == "false":
		tb.Skip("MAILEDGE_INTEGRATION=" + mode)
	case testing.Short() && mode != "require":
		tb.Skip("-short: this test runs " + what)
	}
	return mode == "require"
}

// Missing ends the test for a program that is not installed: a failure
// when require (see Integration), else a skip; install says how to get it.
func Missing(tb testing.TB, require bool, program, install string) {
	tb.Helper()
	if require {
		tb.Fatalf("MAILEDGE_INTEGRATION=require but %s is not installed (%s)", program, install)
	}
	tb.Skipf("%s not installed (%s; set MAILEDGE_INTEGRATION=require to make this an error)", program, install)
}

// NeedProgram returns the path of program, found in PATH, applying
// Integration and Missing.
func NeedProgram(tb testing.TB, program, install string) string {
	tb.Helper()
	require := Integration(tb, program)
	p, err := exec.LookPath(program)
	if err != nil {
		Missing(tb, require, program, install)
	}
	return p
}
