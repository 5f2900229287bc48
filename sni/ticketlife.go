package sni

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"time"
)

// createdTag opens the SessionState.Extra entry that records when a session
// was created; the Unix time in seconds follows, 8 bytes big-endian.
// crypto/tls asks that entries be recognisable by an id and version
// prefix, since other layers may append their own.
const createdTag = "mailedge/created/v1:"

// ticketLifetime makes cfg refuse to resume sessions older than life.
// crypto/tls has no such setting (its own bound is 7 days) and keeps the
// creation time of a session in a field of SessionState it does not
// export, so WrapSession records it in an Extra entry and UnwrapSession
// checks it. Both encrypt with cfg's ticket keys, read at each call: keys
// set on cfg after this (a ticketkeys.Rotator) apply, and the per-pool
// clones of clientAuthConfig, which copy these functions, use cfg's keys
// as crypto/tls would use them for a config without keys of its own.
func ticketLifetime(cfg *tls.Config, life time.Duration) {
	now := func() time.Time {
		if cfg.Time != nil {
			return cfg.Time()
		}
		return time.Now()
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if _, ok := sessionCreated(ss.Extra); !ok {
			created := now()
			if cs.DidResume && cs.Version <= tls.VersionTLS12 {
				// A resumed TLS 1.2 session keeps its master secret, and
				// crypto/tls the time it was made; Extra is not carried over.
				if t, ok := stateCreated(ss, cs.Version); ok {
					created = t
				}
			}
			ss.Extra = append(ss.Extra, createdEntry(created))
		}
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			return nil, err
		}
		// A ticket without the record was made by a config without a
		// lifetime (another replica sharing the keys): its age is unknown.
		created, ok := sessionCreated(ss.Extra)
		if !ok || now().Sub(created) > life {
			return nil, nil // a full handshake
		}
		return ss, nil
	}
}

// createdEntry returns the Extra entry recording t.
func createdEntry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte(createdTag), uint64(t.Unix()))
}

// sessionCreated returns the time recorded in extra by createdEntry.
func sessionCreated(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if len(e) == len(createdTag)+8 && bytes.HasPrefix(e, []byte(createdTag)) {
			secs := binary.BigEndian.Uint64(e[len(createdTag):])
			if secs > 1<<62 {
				continue // not a time this program wrote
			}
			return time.Unix(int64(secs), 0), true
		}
	}
	return time.Time{}, false
}

// stateCreated reads the creation time crypto/tls keeps in a server
// SessionState of version, from the start of its encoding, which
// crypto/tls documents (ticket.go: version, type, cipher_suite,
// created_at) and keeps stable across Go versions that share ticket keys.
// It reports false for anything else.
func stateCreated(ss *tls.SessionState, version uint16) (time.Time, bool) {
	b, err := ss.Bytes()
	if err != nil {
		return time.Time{}, false
	}
	return encodedCreated(b, version)
}

// encodedCreated is stateCreated on an encoded SessionState.
func encodedCreated(b []byte, version uint16) (time.Time, bool) {
	const server = 1 // SessionStateType server
	if len(b) < 13 || binary.BigEndian.Uint16(b) != version || b[2] != server {
		return time.Time{}, false
	}
	secs := binary.BigEndian.Uint64(b[5:13])
	if secs == 0 || secs > 1<<62 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0), true
}
