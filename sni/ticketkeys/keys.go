package ticketkeys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Source gives the session-ticket keys that a fleet shares.
type Source interface {
	// Keys returns the current keys in the order of
	// tls.Config.SetSessionTicketKeys: the first key encrypts new tickets,
	// every key decrypts. It returns at least one key or an error, and the
	// error never contains key material.
	Keys(ctx context.Context) ([][32]byte, error)
}

// ErrNoKeys is returned (wrapped) when a source holds no key at all.
var ErrNoKeys = errors.New("ticketkeys: no keys")

// MaxKeys is the most keys Parse accepts. crypto/tls tries every key on a
// ticket it cannot place, so a long list costs every failed resumption.
const MaxKeys = 16

// Parse reads keys in the format of FileSource: one key per line, as 64
// hexadecimal digits or as 32 bytes in base64 (standard or URL alphabet,
// with or without padding), the first line encrypting new tickets. Blank
// lines are skipped and a '#' starts a comment that runs to the end of its
// line. A line that is not one 32-byte key, a key of 32 zero bytes (a
// placeholder, not a key), a key repeated on another line and more than
// MaxKeys keys are errors that name the line and never quote it. A text
// without keys is ErrNoKeys.
func Parse(data []byte) ([][32]byte, error) {
	var keys [][32]byte
	seen := make(map[[32]byte]int)
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		k, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("ticketkeys: line %d: %w", n, err)
		}
		if first, dup := seen[k]; dup {
			return nil, fmt.Errorf("ticketkeys: line %d: the same key as line %d", n, first)
		}
		if len(keys) == MaxKeys {
			return nil, fmt.Errorf("ticketkeys: line %d: more than %d keys", n, MaxKeys)
		}
		seen[k] = n
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	return keys, nil
}

// decodeKey decodes one trimmed line. Its errors say what was expected
// and how long the line is, never what it holds: encoding/hex's own error,
// for one, names the offending character, so it is replaced.
func decodeKey(s []byte) ([32]byte, error) {
	var k [32]byte
	switch len(s) {
	case 64:
		if _, err := hex.Decode(k[:], s); err != nil {
			return [32]byte{}, errors.New("not a 32-byte key: 64 characters but not hexadecimal")
		}
	case 43, 44:
		enc := base64.StdEncoding
		if bytes.ContainsAny(s, "-_") {
			enc = base64.URLEncoding
		}
		if len(s) == 43 {
			enc = enc.WithPadding(base64.NoPadding)
		}
		var buf [33]byte // room for a decoder that writes past 32
		n, err := enc.Strict().Decode(buf[:], s)
		if err != nil || n != 32 {
			return [32]byte{}, fmt.Errorf("not a 32-byte key: %d characters but not base64 of 32 bytes", len(s))
		}
		copy(k[:], buf[:32])
	default:
		return [32]byte{}, fmt.Errorf("not a 32-byte key: %d characters where 64 hex digits or 44 base64 characters are expected", len(s))
	}
	if k == [32]byte{} {
		return [32]byte{}, errors.New("the key is 32 zero bytes, a placeholder rather than a key")
	}
	return k, nil
}

// Format writes keys in the format Parse and FileSource read, one
// standard base64 key per line in the order given. It is for tools that
// write the key file; a new key comes from crypto/rand (or `openssl rand
// -base64 32`).
func Format(keys [][32]byte) []byte {
	out := make([]byte, 0, len(keys)*45)
	for _, k := range keys {
		out = base64.StdEncoding.AppendEncode(out, k[:])
		out = append(out, '\n')
	}
	return out
}

// Fingerprint returns a short name of key for logs and status pages: the
// first 6 bytes of a SHA-256 of the key under a label of this package, in
// hex. Replicas that show the same fingerprint share the key; the
// fingerprint does not help to recover it.
func Fingerprint(key [32]byte) string {
	h := sha256.New()
	h.Write([]byte("mailedge ticketkeys fingerprint\x00"))
	h.Write(key[:])
	return hex.EncodeToString(h.Sum(nil)[:6])
}
