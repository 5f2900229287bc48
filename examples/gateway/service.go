package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
)

// service is one listener: the library's Proxy plus the log line and
// metrics of each session.
type service struct {
	name  string
	proxy *mailedge.Proxy
	log   *slog.Logger
	m     *metrics

	tlsConfig *tls.Config // the listener's, for the -ticket-keys Rotator

	accepting atomic.Bool // its listener is open: the accept loop runs (see watchedListener)
}

func newService(name string, p *mailedge.Proxy, log *slog.Logger, m *metrics) *service {
	s := &service{name: name, proxy: p, log: log, m: m}
	p.OnSession = s.finish
	p.OnLimited = func(err error) { m.limited(name, err) }
	if m != nil { // without -metrics no one reads the stages: the Proxy skips their clock reads
		p.OnEvent = func(e mailedge.Event) { m.stage(name, e) }
	}
	return s
}

// finish writes the one log line per session: client, outcome, SNI, TLS
// version, cipher, ALPN, backend and the gateway's own address toward it
// (via), user, bytes each way, duration; on SMTP sessions the messages
// and recipients delivered and refused.
func (s *service) finish(in mailedge.SessionInfo) {
	s.m.session(s.name, in)
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return // the line would be dropped: do not format it (-log-level warn, error)
	}
	sniName, version, cipher, alpn := "", "", "", ""
	if in.TLS != nil {
		sniName, version, cipher = in.TLS.ServerName, tls.VersionName(in.TLS.Version), tls.CipherSuiteName(in.TLS.CipherSuite)
		alpn = in.TLS.NegotiatedProtocol
	}
	local := ""
	if in.BackendLocal != nil {
		local = in.BackendLocal.String() // the client the backend logs
	}
	if in.Passthrough {
		sniName = in.ServerName // the TLS is the backend's: the name is the ClientHello's
	}
	attrs := []any{
		"listener", s.name, "client", in.Client.String(), "outcome", string(in.Outcome),
		"sni", sniName, "tls", version, "cipher", cipher, "alpn", alpn, "backend", in.Member, "user", in.User,
		"bytes_in", in.Stats.ClientToServer, "bytes_out", in.Stats.ServerToClient,
		"duration", in.Duration.Round(time.Millisecond), "via", local,
	}
	if smtp := in.Stats.SMTP; smtp.Commands > 0 {
		// An inspected SMTP session: what it delivered and what was
		// refused (by the backend: a relay denied; by the gateway: a rate).
		attrs = append(attrs, "messages", smtp.Messages, "rcpts", smtp.Recipients,
			"rcpts_refused", smtp.RecipientsRefused, "refused", smtp.Refused)
	}
	if in.TLS != nil && len(in.TLS.PeerCertificates) > 0 {
		// The client's own certificate (verify= on the listener): who it
		// names, and whether it verified (optional_no_ca does not verify).
		attrs = append(attrs, "client_cert", in.TLS.PeerCertificates[0].Subject.String(),
			"client_cert_verified", len(in.TLS.VerifiedChains) > 0)
	}
	if in.Passthrough {
		attrs = append(attrs, "passthrough", true)
	}
	if in.Recipient != "" {
		attrs = append(attrs, "rcpt", in.Recipient) // inbound SMTP routed by its first RCPT TO
	}
	if in.Err != nil {
		attrs = append(attrs, "err", in.Err.Error())
	}
	s.log.Info("session", attrs...)
}

// authenticator wraps the gateway's Authenticator for this listener: each
// decision is counted, and a refused login logged with its client and
// user (as Dovecot logs one, for fail2ban), never with its password.
func (s *service) authenticator(a auth.Authenticator) auth.Authenticator {
	return auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
		res, err := a.Authenticate(ctx, req)
		result := "ok"
		switch {
		case err != nil || res == nil:
			result = "error" // logged by the auth.Server's OnError
		case res.OK:
		case res.Temporary:
			result = "temporary"
		default:
			result = "refused"
		}
		s.m.authDecision(s.name, result)
		if result != "ok" && result != "error" && req.Mechanism != auth.None && s.log.Enabled(ctx, slog.LevelInfo) {
			client := ""
			if req.Client != nil {
				client = req.Client.String()
			}
			s.log.Info("login refused", "listener", s.name, "client", client, "user", req.User,
				"mechanism", req.Mechanism, "attempt", req.Attempt, "temporary", res.Temporary)
		}
		return res, err
	})
}

// plainSession reports whether a STARTTLS listener's session stayed plain.
func plainSession(in mailedge.SessionInfo) bool {
	return in.Session != nil && !in.Session.TLS && !in.Implicit
}
