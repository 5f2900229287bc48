package starttls

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge/internal/mailwire"
)

func FuzzParseSMTPCommand(f *testing.F) {
	for _, s := range []string{"EHLO example.com", "MAIL FROM:<a@b> SIZE=1", "quit", "", " x", "STARTTLS  ", "\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		verb, arg, ok := parseSMTPCommand(line)
		if !ok {
			return
		}
		if verb == "" || verb != strings.ToUpper(verb) || strings.Trim(arg, " ") != arg {
			t.Fatalf("parse(%q) = %q, %q", line, verb, arg)
		}
		// Round trip: the canonical form parses to the same command.
		canon := verb
		if arg != "" {
			canon += " " + arg
		}
		v2, a2, ok2 := parseSMTPCommand([]byte(canon))
		if !ok2 || v2 != verb || a2 != arg {
			t.Fatalf("round trip of %q: %q, %q, %v; want %q, %q", canon, v2, a2, ok2, verb, arg)
		}
	})
}

func FuzzParseIMAPCommand(f *testing.F) {
	for _, s := range []string{"a1 LOGIN {5+}", "A CAPABILITY", "* x", "+ y", "t APPEND x ~{12}", "a {}", "a b {99999999999}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parseIMAPCommand(line)
		if cmd.lit.Size < 0 || !cmd.hasLit && cmd.lit != (mailwire.Literal{}) {
			t.Fatalf("parse(%q): literal %+v (announced %v)", line, cmd.lit, cmd.hasLit)
		}
		if err != nil {
			return
		}
		canon := cmd.tag + " " + cmd.name
		if cmd.args != "" || strings.HasSuffix(string(line), " ") {
			canon += " " + cmd.args
		}
		again, err := parseIMAPCommand([]byte(canon))
		if err != nil || again.tag != cmd.tag || again.name != cmd.name || again.args != cmd.args || again.lit != cmd.lit {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", canon, again, err, cmd)
		}
	})
}

func FuzzParsePOP3Command(f *testing.F) {
	for _, s := range []string{"USER alice", "CAPA", "stls", "TOP 1 2", "AB", "ABCDE", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		kw, args, ok := parsePOP3Command(line)
		if !ok {
			return
		}
		if len(kw) < 3 || len(kw) > 4 || kw != strings.ToUpper(kw) {
			t.Fatalf("parse(%q): keyword %q", line, kw)
		}
		canon := kw
		if args != "" || len(line) > len(kw) {
			canon += " " + args
		}
		k2, a2, ok2 := parsePOP3Command([]byte(canon))
		if !ok2 || k2 != kw || a2 != args {
			t.Fatalf("round trip of %q: %q, %q; want %q, %q", canon, k2, a2, kw, args)
		}
	})
}

// FuzzServe feeds arbitrary client bytes to every protocol and mode. Serve
// must end (the client hangs up after its input), and Require mode must
// never yield a plain session.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		"EHLO a\r\nMAIL FROM:<>\r\n", "a LOGIN {3+}\r\nabc\r\n", "CAPA\r\nUSER a\r\n",
		"STARTTLS\r\nRSET\r\n", "a STARTTLS\r\n", "\x16\x03\x01\x00", "QUIT\r\n",
	} {
		f.Add(uint8(0), []byte(s))
	}
	// One certificate for all runs: issuing one per input would dominate.
	cfg := newSrvPKI(f).server
	f.Fuzz(func(t *testing.T, sel uint8, input []byte) {
		s := &Server{
			Protocol: Protocol(sel % 3), Mode: Mode(sel / 3 % 3), TLSConfig: cfg,
			Timeout: srvSafety, HandshakeTimeout: srvSafety,
		}
		client, server := net.Pipe()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = client.Write(input)
			client.Close()
		}()
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, client)
		}()
		sess, err := s.Serve(context.Background(), server)
		server.Close()
		wg.Wait()
		if err == nil && s.Mode == Require && !sess.TLS {
			t.Fatalf("plain session in Require mode: %+v", sess)
		}
		if err == nil && !sess.TLS && len(sess.Pending) == 0 {
			t.Fatalf("plain session without the command that ended the dialogue")
		}
	})
}
