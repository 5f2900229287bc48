package mailtest

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
)

// recase runs the rewrite over chunks, as successive Writes, and returns
// what was passed on.
func recase(chunks ...string) string {
	var f flagCaser
	var out []byte
	for _, c := range chunks {
		out = append(out, f.rewrite([]byte(c))...)
	}
	return string(out)
}

func TestFlagCaser(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"fetch flags", []string{"* 1 FETCH (UID 4 FLAGS (\\seen \\answered \\flagged \\deleted \\draft \\recent))\r\n"},
			"* 1 FETCH (UID 4 FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\Recent))\r\n"},
		{"any case in", []string{"* 1 FETCH (FLAGS (\\SEEN \\dRaFt))\r\n"}, "* 1 FETCH (FLAGS (\\Seen \\Draft))\r\n"},
		{"keywords and other atoms kept", []string{"* 1 FETCH (FLAGS ($seen \\seenx \\* \\noselect))\r\n"},
			"* 1 FETCH (FLAGS ($seen \\seenx \\* \\noselect))\r\n"},
		{"cut across writes", []string{"* 1 FETCH (FLAGS (\\se", "en \\ans", "wered))\r\n"},
			"* 1 FETCH (FLAGS (\\Seen \\Answered))\r\n"},
		{"cut after the backslash", []string{"* 1 FETCH (FLAGS (\\", "deleted))\r\n"}, "* 1 FETCH (FLAGS (\\Deleted))\r\n"},
		{"literal untouched", []string{"* 1 FETCH (BODY[] {12}\r\n(\\seen \\x)\r\n FLAGS (\\seen))\r\n"},
			"* 1 FETCH (BODY[] {12}\r\n(\\seen \\x)\r\n FLAGS (\\Seen))\r\n"},
		{"literal cut across writes", []string{"* 1 FETCH (BODY[] {1", "2}\r\n(\\se", "en \\x)\r\n FLAGS (\\seen))\r\n"},
			"* 1 FETCH (BODY[] {12}\r\n(\\seen \\x)\r\n FLAGS (\\Seen))\r\n"},
		{"quoted string untouched", []string{"* 1 FETCH (ENVELOPE (\"a \\\\seen b\"))\r\n"}, "* 1 FETCH (ENVELOPE (\"a \\\\seen b\"))\r\n"},
		{"TLS after STARTTLS passed on", []string{"a OK begin\r\n", "\x16\x03\x01 (\\seen)"}, "a OK begin\r\n\x16\x03\x01 (\\seen)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, recase(tc.in...))
		})
	}
}

// FuzzFlagCaser: the rewrite changes only the case of letters and never
// the length; where a stream is cut into writes does not change the
// output; a second pass changes nothing more.
func FuzzFlagCaser(f *testing.F) {
	f.Add([]byte("* 1 FETCH (FLAGS (\\seen \\deleted) BODY[] {5}\r\n\\seen)\r\n"), 7)
	f.Add([]byte("* OK [PERMANENTFLAGS (\\answered \\*)] x\r\n"), 0)
	f.Add([]byte("a OK\r\n\x16\x03\x01\x00"), 3)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		whole := recase(string(in))
		if len(whole) > len(in) {
			t.Fatalf("output %d bytes from %d", len(whole), len(in))
		}
		if cut < 0 {
			cut = -cut
		}
		if len(in) > 0 {
			cut %= len(in) + 1
		}
		if cut > len(in) {
			cut = len(in)
		}
		split := recase(string(in[:cut]), string(in[cut:]))
		if whole != split {
			t.Fatalf("cut at %d: %q; whole: %q", cut, split, whole)
		}
		held := in[len(whole):]
		if !bytes.EqualFold([]byte(whole), in[:len(whole)]) {
			t.Fatalf("more than case changed: %q -> %q", in, whole)
		}
		if len(held) > maxFlagName+1 {
			t.Fatalf("held %d bytes", len(held))
		}
		if again := recase(whole); again != whole[:len(again)] {
			t.Fatalf("second pass changed %q to %q", whole, again)
		}
	})
}

// BenchmarkFlagCaser: the rewrite over a FETCH answer with flags and a
// 16 KiB literal, as one Write.
func BenchmarkFlagCaser(b *testing.B) {
	msg := bytes.Repeat([]byte("a line of a message body \\seen (\\deleted)\r\n"), 16<<10/44)
	resp := []byte("* 1 FETCH (UID 7 FLAGS (\\seen \\flagged) BODY[] {" + strconv.Itoa(len(msg)) + "}\r\n")
	resp = append(append(resp, msg...), ")\r\na OK FETCH completed\r\n"...)
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	var f flagCaser
	for b.Loop() {
		f.rewrite(resp)
	}
}
