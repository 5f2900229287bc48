package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/auth/authhttp"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// logins is the gateway's Authenticator for listeners with auth: the users
// file of -auth-file, swapped whole on reload, or the auth_http client of
// -auth-http.
type logins struct {
	file   string                      // -auth-file, or ""
	users  atomic.Pointer[auth.Static] // its current contents
	dialer *backend.Dialer             // template of host= lines and Auth-Server answers
	http   *authhttp.Client            // -auth-http, or nil
	source string                      // for the log: the file, or the URL without its password
}

// Authenticate asks the users file or the auth service.
func (l *logins) Authenticate(ctx context.Context, req *auth.Request) (*auth.Result, error) {
	if l.http != nil {
		return l.http.Authenticate(ctx, req)
	}
	return l.users.Load().Authenticate(ctx, req)
}

// buildLogins reads -auth-file or sets up -auth-http. Without either, no
// listener may have auth.
func (g *gateway) buildLogins() error {
	o := g.opts
	var users []string
	for _, ls := range o.listens {
		if ls.Auth {
			users = append(users, ls.Name)
		}
	}
	switch {
	case o.authFile != "" && o.authHTTP != "":
		return errors.New("-auth-file and -auth-http: give one of them")
	case len(o.authHTTPHeaders) > 0 && o.authHTTP == "":
		return errors.New("-auth-http-header without -auth-http")
	case o.authFile == "" && o.authHTTP == "":
		if len(users) > 0 {
			return fmt.Errorf("-listen %s has auth: give -auth-file or -auth-http", users[0])
		}
		return nil
	}
	l := &logins{file: o.authFile, dialer: &backend.Dialer{Hostname: o.hostname}}
	if o.authFile != "" {
		s, err := auth.LoadStatic(o.authFile)
		if err != nil {
			return fmt.Errorf("-auth-file: %w", err)
		}
		s.Dialer = l.dialer
		l.users.Store(s)
		l.source = o.authFile
		g.log.Info("users file loaded", "file", o.authFile, "contents", s.String())
	} else {
		c, err := g.authHTTPClient(l.dialer)
		if err != nil {
			return err
		}
		l.http = c
		l.source = redactURL(o.authHTTP)
		g.log.Info("auth service", "url", l.source, "timeout", c.Timeout)
	}
	if len(users) == 0 {
		g.log.Warn("no -listen has auth: the authenticator is not used", "source", l.source)
	}
	g.logins = l
	return nil
}

// authHTTPClient builds the client of -auth-http and its headers.
func (g *gateway) authHTTPClient(tmpl *backend.Dialer) (*authhttp.Client, error) {
	o := g.opts
	u, err := url.Parse(o.authHTTP)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-auth-http %s: want an http:// or https:// URL", redactURL(o.authHTTP))
	}
	if o.authHTTPTimeout <= 0 {
		return nil, fmt.Errorf("-auth-http-timeout %v: want a positive duration", o.authHTTPTimeout)
	}
	c := &authhttp.Client{URL: o.authHTTP, Timeout: o.authHTTPTimeout, Dialer: tmpl}
	for i, h := range o.authHTTPHeaders {
		if c.Header == nil {
			c.Header = make(http.Header)
		}
		// A header may carry a shared secret: errors name it by position.
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !validHeaderName(name) || strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("-auth-http-header #%d: want 'Name: value'", i+1)
		}
		c.Header.Add(textproto.CanonicalMIMEHeaderKey(name), value)
	}
	return c, nil
}

// validHeaderName reports whether name is an HTTP field name (RFC 9110
// token).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// redactURL is u without the password of its user information.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// reloadUsers reads the users file again and swaps it in; a file that
// cannot be read or parsed keeps the previous one, and the error (which
// names the file and line, never a password) is logged.
func (g *gateway) reloadUsers() {
	l := g.logins
	if l == nil || l.file == "" {
		return
	}
	s, err := auth.LoadStatic(l.file)
	if err != nil {
		g.log.Error("users file reload failed; still using the previous one", "file", l.file, "err", err)
		return
	}
	s.Dialer = l.dialer
	l.users.Store(s)
	g.log.Info("users file reloaded", "file", l.file, "contents", s.String())
}

// loginServer is the auth.Server of a listener with auth.
func (g *gateway) loginServer(ls listenSpec, s *service) *auth.Server {
	srv := &auth.Server{
		Authenticator: s.authenticator(g.logins),
		Relay:         ls.Relay,
		// A listener that never has TLS (behind a terminating balancer)
		// could not take a password otherwise.
		AllowPlaintext: ls.TLS == "starttls" && ls.Mode == "disallow",
		Limiter:        g.limiter,
		Pools:          g.poolsFor(ls),
		OnError: func(err error) {
			g.log.Warn("login: auth service or backend failed", "listener", ls.Name, "err", err)
		},
	}
	if g.logins.http != nil {
		srv.AuthTimeout = g.logins.http.Timeout
	}
	return srv
}

// poolsFor resolves the pool a login is routed to on listener ls: NAME
// is the pool NAME/POOL, POOL being the listener's own (so that one name
// in a users file serves every protocol: a/imap, a/pop3, a/mx), or else
// the pool NAME itself if it serves the listener's protocol.
func (g *gateway) poolsFor(ls listenSpec) func(string) auth.Backend {
	proto := protocols[ls.Proto]
	pools, protos := g.pools, g.poolProto // this generation's: a reload makes new ones
	return func(name string) auth.Backend {
		if p, ok := pools[name+"/"+ls.Pool]; ok {
			return p
		}
		if p, ok := pools[name]; ok && protos[name] == proto {
			return p
		}
		return nil
	}
}

// loginPoolProtocol returns the protocol of a backend pool named
// NAME/POOL, POOL being the pool of a listener with auth.
func loginPoolProtocol(pool string, listens []listenSpec) (starttls.Protocol, bool) {
	i := strings.LastIndexByte(pool, '/')
	if i <= 0 || i == len(pool)-1 {
		return 0, false
	}
	for _, ls := range listens {
		if ls.Auth && ls.Pool == pool[i+1:] {
			return protocols[ls.Proto], true
		}
	}
	return 0, false
}
