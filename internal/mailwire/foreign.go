package mailwire

import (
	"bufio"
	"bytes"
	"errors"
)

// httpMethods are the request methods IsHTTPRequest knows: RFC 9110's, PATCH
// (RFC 5789), and PRI, the method of HTTP/2's connection preface (RFC 9113
// §3.4).
var httpMethods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"}

// IsHTTPRequest reports whether line, with or without its line end, is an
// HTTP request line (RFC 9112 §3: method SP request-target SP
// HTTP-version), such as "POST /mail HTTP/1.1" or HTTP/2's "PRI *
// HTTP/2.0": what a browser sends when a page makes it talk to a mail port
// (the ALPACA attacks' application layer). The method must be one of
// RFC 9110's, PATCH or PRI; the version HTTP/ DIGIT "." DIGIT. No mail
// command has this shape: an IMAP command would need a tag spelled as a
// method and a mailbox named like an HTTP version.
func IsHTTPRequest(line []byte) bool {
	line = TrimEOL(line)
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isHTTPMethod(line[:sp]) {
		return false
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return false
	}
	v := rest[sp+1:]
	return len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7])
}

func isHTTPMethod(m []byte) bool {
	for _, k := range httpMethods {
		if string(m) == k {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// IsTLSRecord reports whether b starts like a TLS handshake record (RFC
// 8446 §5.1: content type 22, then a legacy version 3.0 to 3.4): a
// ClientHello sent to a port that expects a mail command, by a client that
// should have said STARTTLS first or that took a STARTTLS port for an
// implicit-TLS one. It needs the first three bytes.
func IsTLSRecord(b []byte) bool {
	return len(b) >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04
}

// ErrForeignProtocol reports a client that spoke another protocol to a
// mail port: an HTTP request line or a TLS record where a mail command was
// due (IsHTTPRequest, IsTLSRecord). starttls and bridge return it, under
// their own names.
var ErrForeignProtocol = errors.New("another protocol spoken to a mail port")

// StartsWithTLSRecord reports whether the next bytes of br are a TLS
// record (IsTLSRecord), without consuming them. It waits for the first
// byte only, and for two more only after a 0x16, which no mail command
// starts with; a read error reports false, for the caller's next read to
// see.
func StartsWithTLSRecord(br *bufio.Reader) bool {
	b, err := br.Peek(1)
	if err != nil || b[0] != 0x16 {
		return false
	}
	b, _ = br.Peek(3)
	return IsTLSRecord(b)
}
