package sni

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// maxName is the longest DNS name in text form without the trailing dot
// (RFC 1035 §2.3.4: 255 octets on the wire). Longer SNI values cannot name
// anything we hold, so lookups reject them before copying.
const maxName = 253

// errBadName is wrapped by the errors canonical returns.
var errBadName = errors.New("not a host name")

// pattern says how a registered name matches a server name.
type pattern uint8

const (
	// exactName matches the name itself.
	exactName pattern = iota
	// wildcardName ("*.example.com") matches exactly one label to the left
	// of its base, as RFC 6125 §6.4.3 allows.
	wildcardName
	// ancestorName (".example.com", the Postfix SNI map key form) matches
	// any name below its base, at any depth, but not the base itself.
	ancestorName
)

// canonical returns the key under which name is stored: the base name in
// lower-case A-label form without a trailing dot, and the pattern the
// prefix ("*." or ".") asked for. Partial wildcards ("mail*.example.com"),
// wildcards over a top-level domain, empty labels, IP literals and names
// IDNA's Lookup profile rejects are errors.
func canonical(name string) (string, pattern, error) {
	orig := name
	name = strings.TrimSuffix(name, ".")
	p := exactName
	switch {
	case strings.HasPrefix(name, "*."):
		p, name = wildcardName, name[2:]
	case strings.HasPrefix(name, "."):
		p, name = ancestorName, name[1:]
	}
	if name == "" || strings.Contains(name, "*") {
		return "", 0, fmt.Errorf("%w: %q", errBadName, orig)
	}
	a, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %q: %v", errBadName, orig, err)
	}
	if len(a) > maxName || strings.Contains(a, "..") || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") {
		return "", 0, fmt.Errorf("%w: %q", errBadName, orig)
	}
	if isIPLiteral(a) {
		return "", 0, fmt.Errorf("%w: %q is an IP address", errBadName, orig)
	}
	if p != exactName && !strings.Contains(a, ".") {
		return "", 0, fmt.Errorf("%w: %q covers a whole top-level domain", errBadName, orig)
	}
	return a, p, nil
}

// isIPLiteral reports whether name is an IP address rather than a host name:
// it holds a colon (IPv6) or its last label is all digits, which no
// top-level domain is (RFC 3696 §2).
func isIPLiteral(name string) bool {
	last := name
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case ':':
			return true
		case '.':
			last = name[i+1:]
		}
	}
	if last == "" {
		return false
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// isASCII reports whether s holds only 7-bit bytes.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// lowerInto copies s into buf in lower case and returns the filled part.
// buf must be at least len(s) long. It allocates nothing, which is why the
// hot path uses it rather than strings.ToLower.
func lowerInto(buf []byte, s string) []byte {
	b := buf[:len(s)]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b
}
