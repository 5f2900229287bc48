package mailtest

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Replies in the words Postfix uses, so that checks written against a real
// MTA (the open-relay test of load-balanced SMTP) read the same here.
var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errShutdown     = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Service shutting down"}
)

func errRelayDenied(to string) error {
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "<" + to + ">: Relay access denied"}
}

func errUnknownRecipient(to string) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "<" + to + ">: Recipient address rejected: User unknown in virtual mailbox table"}
}

// newSMTPServer builds the submission server (submission true: AUTH required,
// foreign recipients accepted from authenticated users) or the MX-style
// server (no AUTH, local domains only). AllowInsecureAuth is the "backend
// trust" of a server behind a NetScaler: the gateway in front did TLS, so
// AUTH over what looks like plain TCP is allowed. go-smtp itself refuses MAIL
// and AUTH before EHLO/HELO ("502 5.5.1 Please introduce yourself first.").
func (s *System) newSMTPServer(submission bool, cfg *tls.Config) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{s: s, c: c, submission: submission}, nil
	}))
	srv.Domain = s.hostname()
	srv.MaxMessageBytes = s.maxMessageBytes()
	srv.MaxRecipients = 100
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = s.smtpTimeout()
	srv.WriteTimeout = time.Minute
	srv.TLSConfig = cfg // nil: no STARTTLS offered
	srv.ErrorLog = printfLogger{s.log}
	return srv
}

// smtpSession is one SMTP conversation after EHLO/HELO.
type smtpSession struct {
	s          *System
	c          *smtp.Conn
	submission bool
	user       string // authenticated account; empty if none

	from    string
	local   []string // accepted local recipients (canonical names)
	relayed []string // accepted foreign recipients (submission only)
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// AuthMechanisms lists PLAIN and LOGIN on submission and nothing on MX, so
// that MX advertises no AUTH.
func (ss *smtpSession) AuthMechanisms() []string {
	if !ss.submission {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth returns the SASL server for mech.
func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if !ss.submission {
		return nil, smtp.ErrAuthUnsupported
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return ss.login(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{auth: ss.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *smtpSession) login(user, pass string) error {
	name, ok := ss.s.checkPassword(user, pass)
	if !ok {
		ss.s.log.Info("mailtest: smtp auth failed", "client", ss.client(), "user", user)
		return smtp.ErrAuthFailed
	}
	ss.user = name
	return nil
}

func (ss *smtpSession) client() string { return ss.c.Conn().RemoteAddr().String() }

// Mail starts a transaction; submission requires AUTH first (RFC 6409 §4.3).
func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.submission && ss.user == "" {
		return errAuthRequired
	}
	ss.from = from
	return nil
}

// Rcpt accepts a local account, or (submission, authenticated) a foreign
// address that is then dropped as "relayed". Anything else is refused.
func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case ss.s.isLocal(to):
		name, ok := ss.s.lookup(to)
		if !ok {
			return errUnknownRecipient(to)
		}
		ss.local = append(ss.local, name)
	case ss.submission && ss.user != "":
		ss.relayed = append(ss.relayed, to)
	default:
		ss.s.log.Info("mailtest: relay denied", "client", ss.client(), "to", to)
		return errRelayDenied(to)
	}
	return nil
}

// Data reads the message, adds Return-Path and Received, and delivers one
// copy per local recipient. Foreign recipients are logged as relayed and
// dropped: the demo has no outbound queue.
func (ss *smtpSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err // smtp.ErrDataTooLarge travels as 552 5.3.4
	}
	id := queueID()
	for _, to := range ss.local {
		if err := ss.s.Deliver(to, append(ss.traceHeaders(id, to), body...)); err != nil {
			if errors.Is(err, ErrClosed) {
				return errShutdown
			}
			return err
		}
	}
	for _, to := range ss.relayed {
		ss.s.log.Info("mailtest: relayed (dropped)", "id", id, "from", ss.from, "to", to, "user", ss.user, "bytes", len(body))
	}
	ss.s.log.Info("mailtest: message accepted", "id", id, "client", ss.client(), "from", ss.from,
		"local", len(ss.local), "relayed", len(ss.relayed))
	return nil
}

// traceHeaders returns the Return-Path and Received fields (RFC 5321 §4.4)
// for one delivery.
func (ss *smtpSession) traceHeaders(id, to string) []byte {
	with := "ESMTP"
	if ss.user != "" {
		with = "ESMTPA" // RFC 3848
	}
	if _, isTLS := ss.c.TLSConnectionState(); isTLS {
		with = with[:5] + "S" + with[5:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", ss.from)
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (mailedge demo) with %s id %s\r\n\tfor <%s>; %s\r\n",
		ss.c.Hostname(), ss.client(), ss.s.hostname(), with, id, to, time.Now().Format(time.RFC1123Z))
	return b.Bytes()
}

func queueID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reset ends the current transaction.
func (ss *smtpSession) Reset() {
	ss.from, ss.local, ss.relayed = "", nil, nil
}

// Logout ends the session.
func (ss *smtpSession) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl offers only as a client.
type loginServer struct {
	auth func(user, pass string) error
	user string
	step int
}

// Next implements sasl.Server: it asks for the user name, then the password.
func (a *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch a.step {
	case 0:
		a.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		a.user = string(response) // initial response carries the user name
		a.step = 2
		return []byte("Password:"), false, nil
	case 1:
		a.user = string(response)
		a.step = 2
		return []byte("Password:"), false, nil
	case 2:
		a.step = 3
		return nil, true, a.auth(a.user, string(response))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}
