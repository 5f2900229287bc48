package ticketkeys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"testing"
)

// errorShapes are the messages Parse may return once numbers are replaced
// by N: a message of any other shape could be quoting its input.
var errorShapes = map[string]bool{
	"ticketkeys: no keys": true,
	"ticketkeys: line N: not a N-byte key: N characters but not hexadecimal":                                   true,
	"ticketkeys: line N: not a N-byte key: N characters but not baseN of N bytes":                              true,
	"ticketkeys: line N: not a N-byte key: N characters where N hex digits or N baseN characters are expected": true,
	"ticketkeys: line N: the key is N zero bytes, a placeholder rather than a key":                             true,
	"ticketkeys: line N: the same key as line N":                                                               true,
	"ticketkeys: line N: more than N keys":                                                                     true,
}

var digits = regexp.MustCompile(`[0-9]+`)

// FuzzParse checks that Parse never panics, that what it accepts survives
// Format and Parse again, that it returns at most MaxKeys distinct
// non-zero keys, and that its errors have one of the known shapes, so
// they cannot carry the input.
func FuzzParse(f *testing.F) {
	k := testKey(3)
	f.Add([]byte(base64.StdEncoding.EncodeToString(k[:]) + "\n"))
	f.Add([]byte("# comment\n" + hex.EncodeToString(k[:]) + " # trailing\r\n\n"))
	f.Add([]byte(base64.RawURLEncoding.EncodeToString(k[:])))
	f.Add([]byte(manyKeys(3)))
	f.Add([]byte(hex.EncodeToString(k[:31])))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := Parse(data)
		if err != nil {
			if keys != nil {
				t.Fatalf("keys with an error")
			}
			if shape := digits.ReplaceAllString(err.Error(), "N"); !errorShapes[shape] {
				t.Fatalf("error of an unknown shape (may quote its input): %q", err)
			}
			return
		}
		if len(keys) == 0 || len(keys) > MaxKeys {
			t.Fatalf("%d keys", len(keys))
		}
		seen := map[[32]byte]bool{}
		for _, k := range keys {
			if k == [32]byte{} || seen[k] {
				t.Fatalf("zero or repeated key accepted")
			}
			seen[k] = true
		}
		again, err := Parse(Format(keys))
		if err != nil {
			t.Fatalf("Format's output refused: %v", err)
		}
		if !bytes.Equal(Format(again), Format(keys)) {
			t.Fatalf("keys changed through Format and Parse")
		}
	})
}
