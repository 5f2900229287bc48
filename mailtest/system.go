package mailtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
)

// Sentinel errors returned by System. Callers branch on them with errors.Is.
var (
	// ErrClosed is returned by the Serve methods, Start, Deliver and Messages
	// once Close has been called.
	ErrClosed = errors.New("mailtest: system closed")
	// ErrUnknownUser is returned when an address names no account.
	ErrUnknownUser = errors.New("mailtest: unknown user")
	// ErrNotLocal is returned by Deliver for an address outside the local
	// domains.
	ErrNotLocal = errors.New("mailtest: domain is not local")
	// ErrBadOptions is returned by New for an unusable Options value.
	ErrBadOptions = errors.New("mailtest: bad options")
)

const (
	defaultUser            = "demo@example.com"
	defaultPassword        = "demo"
	defaultHostname        = "mail.example.com"
	defaultMaxMessageBytes = 10 << 20
	// RFC 5321 §4.5.3.2.7: the server timeout between commands is 5 minutes.
	defaultSMTPTimeout = 5 * time.Minute
	// RFC 1939 §3: the autologout timer is at least 10 minutes.
	defaultPOP3Timeout = 10 * time.Minute
	// proxyHeaderTimeout bounds how long a loopback peer may take to send
	// its PROXY header.
	proxyHeaderTimeout = 5 * time.Second
)

// Options configure a System. The zero value gives the demo deployment: one
// account demo@example.com with password "demo" and the local domains
// example.com, example.net and example.org.
type Options struct {
	// Users maps a full address (the login name) to its password. If nil,
	// the single account demo@example.com / demo. Addresses are lower-cased:
	// SMTP and POP3 match them in any case, IMAP LOGIN needs lower case.
	Users map[string]string
	// Domains are the local domains: mail for them is delivered here and
	// never relayed. If nil, example.com, example.net and example.org; the
	// domains of Users are always local too.
	Domains []string
	// Hostname names this system in greetings and Received headers. If
	// empty, mail.example.com.
	Hostname string
	// Logger receives one line per session and per delivery. If nil,
	// slog.Default() for New, and nothing is logged for NewSystem.
	Logger *slog.Logger
	// AcceptProxy wraps every listener so that connections from loopback
	// addresses must open with a PROXY protocol v1 or v2 header, whose
	// source address is then logged and written into Received headers.
	// Connections from other addresses are served as they are and any
	// header they send is treated as protocol data, never trusted. If
	// false, no PROXY header is read.
	AcceptProxy bool
	// TLSConfig, if set, makes the plain listeners offer STARTTLS (SMTP,
	// IMAP) and STLS (POP3), and enables the implicit-TLS Serve methods.
	// If nil, TLS is not offered and ServeIMAPS, ServeSubmissions and
	// ServePOP3S return ErrBadOptions.
	TLSConfig *tls.Config
	// MaxMessageBytes limits a message accepted over SMTP. If zero, 10 MiB.
	MaxMessageBytes int64
	// Timeout bounds how long the SMTP and POP3 servers wait for a client's
	// next command line. If zero, 5 minutes for SMTP (RFC 5321 §4.5.3.2)
	// and 10 minutes for POP3 (RFC 1939 §3). IMAP keeps go-imap's own
	// timers (30 minutes when authenticated, as RFC 9051 asks).
	Timeout time.Duration
}

// System is an in-process mail system: accounts and their INBOX held by
// go-imap's imapmemserver, served over IMAP, SMTP submission, MX-style SMTP
// and POP3. Create it with New and release it with Close.
type System struct {
	opt     Options
	log     *slog.Logger
	users   map[string]string // address -> password
	domains map[string]bool
	mem     *imapmemserver.Server
	boxes   map[string]*imapmemserver.User
	imap    *imapserver.Server // offers STARTTLS when Options.TLSConfig is set
	sub, mx *smtp.Server       // likewise
	// The same servers offering no STARTTLS, for the Plain listeners; the
	// ones above when Options.TLSConfig is nil.
	imapPlain         *imapserver.Server
	subPlain, mxPlain *smtp.Server
	internal          *pipeListener // in-process IMAP for POP3 and Messages

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	mu              sync.Mutex
	closed          bool
	internalStarted bool
	listeners       map[net.Listener]struct{}
	pop3Conns       map[net.Conn]struct{}
	pop3Locks       map[string]bool // users whose maildrop a POP3 session holds
	stops           []func() bool   // Start's context.AfterFunc registrations
	wg              sync.WaitGroup  // Start's serve goroutines and internal IMAP
	conns           sync.WaitGroup  // every accepted connection until closed
	closeOnce       sync.Once
	closeErr        error
}

// New returns a System configured by opt. It starts no goroutine and opens
// no listener: call the Serve methods or Start for that, and Close when done.
func New(opt Options) (*System, error) {
	s := &System{
		opt:       opt,
		log:       opt.Logger,
		users:     make(map[string]string),
		domains:   make(map[string]bool),
		mem:       imapmemserver.New(),
		boxes:     make(map[string]*imapmemserver.User),
		internal:  newPipeListener(),
		listeners: make(map[net.Listener]struct{}),
		pop3Conns: make(map[net.Conn]struct{}),
		pop3Locks: make(map[string]bool),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.addUsers(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.imap = s.newIMAPServer(opt.TLSConfig)
	s.sub = s.newSMTPServer(true, opt.TLSConfig)
	s.mx = s.newSMTPServer(false, opt.TLSConfig)
	s.imapPlain, s.subPlain, s.mxPlain = s.imap, s.sub, s.mx
	if opt.TLSConfig != nil {
		s.imapPlain = s.newIMAPServer(nil)
		s.subPlain = s.newSMTPServer(true, nil)
		s.mxPlain = s.newSMTPServer(false, nil)
	}
	return s, nil
}

// addUsers fills the account and domain tables and creates each INBOX.
func (s *System) addUsers() error {
	users := s.opt.Users
	if users == nil {
		users = map[string]string{defaultUser: defaultPassword}
	}
	domains := s.opt.Domains
	if domains == nil {
		domains = []string{"example.com", "example.net", "example.org"}
	}
	for _, d := range domains {
		s.domains[strings.ToLower(d)] = true
	}
	for addr, pass := range users {
		local, domain, ok := splitAddress(addr)
		if !ok || local == "" {
			return fmt.Errorf("%w: user %q is not an address", ErrBadOptions, addr)
		}
		addr = local + "@" + domain
		s.domains[domain] = true
		s.users[addr] = pass
		u := imapmemserver.NewUser(addr, pass)
		if err := u.Create("INBOX", nil); err != nil {
			return fmt.Errorf("mailtest: create INBOX for %s: %w", addr, err)
		}
		s.mem.AddUser(u)
		s.boxes[addr] = u
	}
	return nil
}

func (s *System) hostname() string { return hostnameOf(s.opt) }

func (s *System) maxMessageBytes() int64 {
	if s.opt.MaxMessageBytes > 0 {
		return s.opt.MaxMessageBytes
	}
	return defaultMaxMessageBytes
}

func (s *System) smtpTimeout() time.Duration {
	if s.opt.Timeout > 0 {
		return s.opt.Timeout
	}
	return defaultSMTPTimeout
}

func (s *System) pop3Timeout() time.Duration {
	if s.opt.Timeout > 0 {
		return s.opt.Timeout
	}
	return defaultPOP3Timeout
}

// splitAddress returns the lower-cased local part and domain of addr. The
// demo treats local parts case-insensitively, as most mail systems do.
func splitAddress(addr string) (local, domain string, ok bool) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

// lookup returns the canonical account name for addr and whether it exists.
func (s *System) lookup(addr string) (string, bool) {
	local, domain, ok := splitAddress(addr)
	if !ok {
		return "", false
	}
	addr = local + "@" + domain
	_, ok = s.users[addr]
	return addr, ok
}

// isLocal reports whether addr belongs to a local domain.
func (s *System) isLocal(addr string) bool {
	_, domain, ok := splitAddress(addr)
	return ok && s.domains[domain]
}

// checkPassword reports whether user (any case) has password pass.
func (s *System) checkPassword(user, pass string) (string, bool) {
	name, ok := s.lookup(user)
	if !ok {
		return "", false
	}
	return name, s.boxes[name].Login(name, pass) == nil
}

// Close stops every listener and connection, and waits until every
// goroutine the System started has ended and every connection it accepted
// has been closed (see the package doc for go-imap's and go-smtp's own
// per-connection goroutines). Close is safe to call more than once and from several
// goroutines: every call waits for the first to finish.
func (s *System) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *System) close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.pop3Conns {
		c.Close()
	}
	stops := s.stops
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	s.cancel()
	s.internal.Close()
	// The serve loops end with their listeners, closed above; wait for
	// them before closing the servers: go-imap's Server.Close waits on a
	// WaitGroup that a Serve still starting adds to, which the race
	// detector reports.
	s.wg.Wait()
	var errs []error
	closeErrs := []error{s.sub.Close(), s.mx.Close(), s.imap.Close()}
	if s.opt.TLSConfig != nil {
		closeErrs = append(closeErrs, s.subPlain.Close(), s.mxPlain.Close(), s.imapPlain.Close())
	}
	for _, err := range closeErrs {
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, smtp.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	s.conns.Wait()
	return errors.Join(errs...)
}
