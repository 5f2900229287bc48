//go:build unix

package integration_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// modeEnv selects whether the suite runs: "require" (missing servers fail
// the run), "off" (skip), or unset (run when everything is installed).
const modeEnv = "MAILEDGE_INTEGRATION"

// suite is the shared environment TestMain starts; nil when skipped.
var suite *env

// skipReason says why the suite does not run; empty when it runs.
var skipReason string

// needed are the programs the suite runs.
var needed = []string{"dovecot", "doveadm", "postfix", "postconf", "swaks", "curl", "openssl", "python3"}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	mode := strings.ToLower(os.Getenv(modeEnv))
	switch {
	case mode == "off" || mode == "0" || mode == "false":
		skipReason = modeEnv + "=off"
	case testing.Short() && mode != "require":
		skipReason = "-short"
	default:
		if missing := prerequisites(); missing != "" {
			if mode == "require" {
				fmt.Fprintf(os.Stderr, "integration: %s=require but %s\n", modeEnv, missing)
				return 1
			}
			skipReason = missing + " (set " + modeEnv + "=require to make this an error)"
		}
	}
	if skipReason != "" {
		fmt.Fprintln(os.Stderr, "integration: skipping the suite:", skipReason)
		return m.Run()
	}
	e, err := startEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: setup failed:", err)
		if e != nil {
			e.dumpLogs(os.Stderr)
			e.stop()
		}
		return 1
	}
	suite = e
	code := m.Run()
	if code != 0 {
		e.dumpLogs(os.Stderr)
	}
	e.stop()
	return code
}

// prerequisites returns what is missing to run the suite, or "".
func prerequisites() string {
	var missing []string
	for _, p := range needed {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return "not installed: " + strings.Join(missing, ", ")
	}
	if os.Geteuid() != 0 {
		return "not root: Dovecot and Postfix must start as root to drop privileges"
	}
	return ""
}

// need returns the shared environment or skips the test with the reason the
// suite does not run.
func need(t *testing.T) *env {
	t.Helper()
	if suite == nil {
		t.Skip("integration suite not running: " + skipReason)
	}
	return suite
}
