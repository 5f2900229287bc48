package bridge

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseCommand checks that any line parses without panic, that the
// verb is the upper-cased first word and that the path comes from the line.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"MAIL FROM:<a@b> SIZE=1\r\n", "rcpt to:<\"q>\"@x>\r\n", "BDAT 10 LAST\r\n", "\r\n", "RCPT TO:<"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c := parseCommand([]byte(line))
		if string(c.Line) != line {
			t.Fatalf("Line = %q; want %q", c.Line, line)
		}
		verb, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		if c.Verb != strings.ToUpper(verb) {
			t.Fatalf("Verb = %q; want %q", c.Verb, strings.ToUpper(verb))
		}
		if utf8.ValidString(line) && !strings.Contains(line, c.Arg) {
			t.Fatalf("Arg %q not in line %q", c.Arg, line)
		}
		if size, last, ok := parseBDAT(c.Arg); ok {
			again := fmt.Sprint(size)
			if last {
				again += " LAST"
			}
			if s2, l2, ok2 := parseBDAT(again); !ok2 || s2 != size || l2 != last {
				t.Fatalf("BDAT %q does not round-trip", c.Arg)
			}
		}
	})
}

// FuzzScanData compares the data scanner, fed in random pieces, with a
// direct search for the end of content.
func FuzzScanData(f *testing.F) {
	f.Add([]byte("a\r\n.\r\n"), uint64(1))
	f.Add([]byte(".\r\n"), uint64(2))
	f.Add([]byte("x\n.\nY\r\n..\r\n.\r\n"), uint64(3))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		want := -1
		if bytes.HasPrefix(data, []byte(".\r\n")) {
			want = 3
		} else if i := bytes.Index(data, []byte("\r\n.\r\n")); i >= 0 {
			want = i + 5
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		st, got := dataLineStart, -1
		for off := 0; off < len(data) && got < 0; {
			n := 1 + rng.IntN(len(data)-off)
			if end := scanData(&st, data[off:off+n]); end >= 0 {
				got = off + end
			}
			off += n
		}
		if got != want {
			t.Fatalf("end of %q at %d; want %d", data, got, want)
		}
	})
}
