package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASL on the client side of the login (RFC 4422): the mechanism's server
// half from go-sasl where it has one (PLAIN, EXTERNAL), LOGIN here, and the
// framing each protocol shares: base64 lines after a continuation request,
// "*" to abort, "=" for an empty initial response (RFC 4954, RFC 9051
// §6.2.2, RFC 5034).

var (
	errSASLAbort   = errors.New("authentication aborted")
	errSASLBase64  = errors.New("invalid base64 in SASL response")
	errSASLTooLong = errors.New("SASL response too long")
	errSASLBad     = errors.New("malformed SASL response")
)

// maxSASLSteps bounds the round trips of one exchange: PLAIN and EXTERNAL
// take one, LOGIN two.
const maxSASLSteps = 4

// saslExchange runs mechanism mech to its end. ir is the initial response
// as sent ("=" for empty), or nil when there was none; challenge writes a
// continuation request carrying c and next reads the client's answer line.
// It returns the credentials the client gave, in a Request of the
// mechanism, or errSASLAbort, a malformed-response error, or I/O errors.
func (d *dialogue) saslExchange(mech string, ir []byte, challenge func(c []byte), next func() ([]byte, error)) (*Request, error) {
	req := d.baseRequest(mech)
	var srv sasl.Server
	switch mech {
	case Plain:
		srv = sasl.NewPlainServer(func(identity, username, password string) error {
			req.User, req.Password = username, Secret(password)
			if identity != username {
				req.AuthzID = identity
			}
			return nil
		})
	case External:
		srv = sasl.NewExternalServer(func(identity string) error {
			req.User = identity
			return nil
		})
	case Login:
		srv = &loginServer{req: req}
	default:
		return nil, errSASLBad
	}
	var resp []byte
	if ir != nil {
		var err error
		if resp, err = decodeSASL(ir); err != nil {
			return nil, err
		}
	}
	for step := 0; ; step++ {
		c, done, err := srv.Next(resp)
		if err != nil {
			return nil, errSASLBad
		}
		if done {
			break
		}
		if step >= maxSASLSteps {
			return nil, errSASLBad
		}
		challenge(c)
		line, err := next()
		if err != nil {
			return nil, err
		}
		if resp, err = decodeSASL(line); err != nil {
			return nil, err
		}
	}
	if mech == External && req.User == "" && d.cert != nil {
		req.User = d.cert.Subject.CommonName
	}
	if strings.ContainsAny(req.User, "\x00\r\n") || strings.ContainsAny(req.AuthzID, "\x00\r\n") {
		return nil, errSASLBad
	}
	return req, nil
}

// decodeSASL decodes one client line of an exchange: "*" aborts, "=" is
// an empty response (as an initial response), anything else base64.
func decodeSASL(line []byte) ([]byte, error) {
	switch {
	case len(line) == 1 && line[0] == '*':
		return nil, errSASLAbort
	case len(line) == 1 && line[0] == '=':
		return []byte{}, nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	n, err := base64.StdEncoding.Decode(out, line)
	if err != nil {
		return nil, errSASLBase64
	}
	return out[:n], nil
}

// encodeSASL returns a challenge as a continuation carries it.
func encodeSASL(c []byte) string {
	return base64.StdEncoding.EncodeToString(c)
}

// loginServer is the server half of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl offers only as a client:
// "Username:", then "Password:". A user name sent as the initial response
// skips the first challenge, as Cyrus and Dovecot allow.
type loginServer struct {
	req  *Request
	step int
}

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.step = 2
		if bytes.IndexByte(resp, 0) >= 0 {
			return nil, false, errSASLBad
		}
		l.req.User = string(resp)
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		l.req.Password = Secret(resp)
		return nil, true, nil
	}
	return nil, false, errSASLBad
}
