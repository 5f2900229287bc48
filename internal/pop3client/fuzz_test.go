package pop3client

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the reply parser: it must not panic,
// every status it accepts must start with +OK or -ERR, and no returned line
// may exceed the bound or hold a line ending.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"+OK ready\r\nTOP\r\n..x\r\n.\r\n",
		"-ERR nope\r\n",
		"+OK\n.\n",
		"garbage",
		strings.Repeat("y", 100) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 64
		r := NewReader(bytes.NewReader(data), max)
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		if len(line)+1 > max || strings.ContainsAny(line, "\n") {
			t.Fatalf("line %q breaks the bound or holds LF", line)
		}
		_, err = ParseStatus(line)
		var perr *Error
		up := strings.ToUpper(line)
		switch {
		case err == nil && !strings.HasPrefix(up, "+OK"):
			t.Fatalf("accepted %q as +OK", line)
		case errors.As(err, &perr) && !strings.HasPrefix(up, "-ERR"):
			t.Fatalf("accepted %q as -ERR", line)
		}
		lines, err := r.ReadLines()
		if err != nil {
			return
		}
		for _, l := range lines {
			if len(l)+1 > max || strings.ContainsAny(l, "\n") {
				t.Fatalf("body line %q breaks the bound or holds LF", l)
			}
		}
	})
}

// FuzzDotStuffing checks the round trip: lines dot-stuffed and terminated as
// a server sends them come back unchanged.
func FuzzDotStuffing(f *testing.F) {
	f.Add("a\n.b\n..\n.")
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Contains(body, "\r") {
			return
		}
		lines := strings.Split(body, "\n")
		var wire strings.Builder
		for _, l := range lines {
			if strings.HasPrefix(l, ".") {
				wire.WriteByte('.')
			}
			wire.WriteString(l + "\r\n")
		}
		wire.WriteString(".\r\n")
		got, err := NewReader(strings.NewReader(wire.String()), 1<<20).ReadLines()
		if err != nil {
			if errors.Is(err, ErrMalformed) && len(lines) > MaxLines {
				return
			}
			t.Fatalf("ReadLines(%q): %v", wire.String(), err)
		}
		if strings.Join(got, "\n") != body || len(got) != len(lines) {
			t.Fatalf("round trip: got %q; want %q", got, lines)
		}
	})
}
