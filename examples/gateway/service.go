package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/mailedge/mailedge"
)

// service is one listener: the library's Proxy plus the log line and
// metrics of each session.
type service struct {
	name  string
	proxy *mailedge.Proxy
	log   *slog.Logger
	m     *metrics
}

func newService(name string, p *mailedge.Proxy, log *slog.Logger, m *metrics) *service {
	s := &service{name: name, proxy: p, log: log, m: m}
	p.OnSession = s.finish
	p.OnLimited = func(err error) { m.limited(name, err) }
	return s
}

// finish writes the one log line per session: client, SNI, TLS version,
// backend, bytes each way, duration, outcome.
func (s *service) finish(in mailedge.SessionInfo) {
	s.m.session(s.name, in)
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return // the line would be dropped: do not format it (-log-level warn, error)
	}
	sniName, version, cipher := "", "", ""
	if in.TLS != nil {
		sniName, version, cipher = in.TLS.ServerName, tls.VersionName(in.TLS.Version), tls.CipherSuiteName(in.TLS.CipherSuite)
	}
	attrs := []any{
		"listener", s.name, "client", in.Client.String(), "outcome", string(in.Outcome),
		"sni", sniName, "tls", version, "cipher", cipher, "backend", in.Member,
		"bytes_in", in.Stats.ClientToServer, "bytes_out", in.Stats.ServerToClient,
		"duration", in.Duration.Round(time.Millisecond),
	}
	if in.Err != nil {
		attrs = append(attrs, "err", in.Err.Error())
	}
	s.log.Info("session", attrs...)
}

// plainSession reports whether a STARTTLS listener's session stayed plain.
func plainSession(in mailedge.SessionInfo) bool {
	return in.Session != nil && !in.Session.TLS && !in.Implicit
}
