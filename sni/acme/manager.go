package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/mailedge/mailedge/sni"
)

// LetsEncrypt is the directory URL of Let's Encrypt's production CA, the
// default CA of a Manager.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// ErrConfig is returned (wrapped, with the reason) by Run and Check when the
// Manager's fields cannot work: no domains, no email, no challenge.
var ErrConfig = errors.New("acme: bad configuration")

// KeyType is the algorithm of the certificates' keys.
type KeyType int

const (
	// ECDSA is an ECDSA P-256 key, the default.
	ECDSA KeyType = iota
	// RSA is an RSA 2048-bit key, for clients that support no ECDSA.
	RSA
)

// String returns "ECDSA" or "RSA".
func (k KeyType) String() string {
	if k == RSA {
		return "RSA"
	}
	return "ECDSA"
}

// Manager obtains and renews certificates for Domains through ACME and
// serves them as an sni.Source. Set its fields, put it in an sni.Store's
// Sources, and call Run. A Manager must not be copied after first use, and
// its fields must not change once Run or Check has been called.
type Manager struct {
	// Domains are the names to obtain certificates for, one certificate
	// each ("*.example.com" needs DNS). Required.
	Domains []string
	// Email is the ACME account's contact address (RFC 8555 §7.3).
	// Required: without one, certmagic would ask for it on standard input.
	Email string
	// CA is the ACME directory URL. If empty, LetsEncrypt.
	CA string
	// Profile is the ACME certificate profile to ask for (Let's Encrypt's
	// "shortlived", "tlsserver"). If empty, the CA's default.
	Profile string
	// RootCAs verifies the CA's HTTPS certificate, for a private CA such
	// as pebble or step-ca. If nil, the system roots.
	RootCAs *x509.CertPool

	// HTTPAddr is the host:port the CA's HTTP-01 validation reaches (port
	// 80 in production, usually behind the same IP as the mail ports).
	// Run and Check listen on it for as long as they run, unless
	// ExternalHTTP. If empty, HTTP-01 is off and DNS is required.
	HTTPAddr string
	// ExternalHTTP says that the application serves HTTPAddr itself with
	// HTTPHandler mounted, so the Manager does not listen on it. If
	// false, the Manager listens.
	ExternalHTTP bool
	// DNS solves DNS-01 challenges through a libdns provider; a wildcard
	// name needs it. If nil, HTTP-01 on HTTPAddr.
	DNS certmagic.DNSProvider
	// DNSResolvers are the DNS servers (host:port) asked to find a name's
	// zone and to check that a TXT record is visible. If empty, the
	// system's.
	DNSResolvers []string
	// DNSPropagationTimeout bounds the wait for a TXT record to be visible
	// to DNSResolvers. If zero, two minutes. If negative, no check.
	DNSPropagationTimeout time.Duration

	// Storage keeps the account, certificates, keys and locks; replicas
	// sharing one share certificates and never obtain the same one twice.
	// If nil, certmagic's file storage in Dir.
	Storage certmagic.Storage
	// Dir is the folder of the default file storage. If empty,
	// "mailedge/acme" under os.UserConfigDir.
	Dir string

	// KeyType is the key algorithm of new certificates. If zero, ECDSA.
	KeyType KeyType
	// RenewBefore is how long before its expiry a certificate is renewed.
	// If zero, a third of its lifetime (30 days of a 90-day certificate).
	RenewBefore time.Duration
	// CheckInterval is how often Run checks the certificates for
	// renewal, in Storage (a renewal by another replica) and at the CA.
	// If zero, ten minutes.
	CheckInterval time.Duration
	// RetryInterval is how soon Run checks again after a failure. If zero,
	// CheckInterval or five minutes, whichever is shorter.
	RetryInterval time.Duration
	// Default makes the certificate of Domains[0] a default one (see
	// sni.Entry.Default). If false, the Store's rule applies.
	Default bool

	// Logger receives the Manager's log lines and certmagic's (those at
	// its info level and below at debug, its warnings and errors at
	// warn). If nil, slog.Default().
	Logger *slog.Logger
	// OnRenew is called, from the goroutine of Run or Check, after each
	// certificate obtained, renewed, or first loaded or found renewed in
	// Storage, once Load returns it: call the Store's Reload there. If
	// nil, nothing is called.
	OnRenew func(Renewal)
	// OnError is called, from the goroutine of Run or Check, with each
	// failure to load, obtain or renew a certificate; the previous
	// certificate, if any, keeps serving. If nil, the failure is logged
	// at error.
	OnError func(error)

	mu      sync.Mutex // guards certs, status
	certs   map[string]*tls.Certificate
	status  map[string]*Status
	checkMu sync.Mutex // serialises Run's and Check's steps
	handler handlerState
}

// Renewal describes a certificate that Load now returns for a domain.
type Renewal struct {
	// Domain is the managed name.
	Domain string
	// Certificate is the new certificate, with Leaf set.
	Certificate *tls.Certificate
	// Previous is the certificate it replaces. If nil, the domain had
	// none since the Manager started.
	Previous *x509.Certificate
	// FromCA is true when this Manager obtained the certificate from the
	// CA just now, false when it was found in Storage (obtained earlier,
	// or by another replica).
	FromCA bool
}

// Status is what the Manager knows of one domain.
type Status struct {
	// Domain is the managed name.
	Domain string
	// NotAfter is the expiry of the certificate served. If zero, none is.
	NotAfter time.Time
	// LastCheck is when the domain was last checked.
	LastCheck time.Time
	// Err is the last check's failure. If nil, it succeeded.
	Err error
	// Failures counts the checks that failed in a row.
	Failures int
}

var _ sni.Source = (*Manager)(nil)

func (m *Manager) ca() string {
	if m.CA == "" {
		return LetsEncrypt
	}
	return m.CA
}

func (m *Manager) checkInterval() time.Duration {
	if m.CheckInterval <= 0 {
		return 10 * time.Minute
	}
	return m.CheckInterval
}

func (m *Manager) retryInterval() time.Duration {
	if m.RetryInterval > 0 {
		return m.RetryInterval
	}
	return min(m.checkInterval(), 5*time.Minute)
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger == nil {
		return slog.Default()
	}
	return m.Logger
}

// renewBefore returns how long before the expiry of leaf it is renewed.
func (m *Manager) renewBefore(leaf *x509.Certificate) time.Duration {
	if m.RenewBefore > 0 {
		return m.RenewBefore
	}
	return leaf.NotAfter.Sub(leaf.NotBefore) / 3
}

func (m *Manager) storage() (certmagic.Storage, error) {
	if m.Storage != nil {
		return m.Storage, nil
	}
	dir := m.Dir
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("%w: no Dir and no user config folder: %v", ErrConfig, err)
		}
		dir = filepath.Join(base, "mailedge", "acme")
	}
	return &certmagic.FileStorage{Path: dir}, nil
}

// domains returns Domains normalised as certmagic stores them, or an error
// naming the first unusable one.
func (m *Manager) domains() ([]string, error) {
	if len(m.Domains) == 0 {
		return nil, fmt.Errorf("%w: no domains", ErrConfig)
	}
	out := make([]string, 0, len(m.Domains))
	for _, d := range m.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		if !certmagic.SubjectQualifiesForCert(d) || certmagic.SubjectIsIP(d) {
			return nil, fmt.Errorf("%w: %q is not a host name", ErrConfig, d)
		}
		if strings.HasPrefix(d, "*.") && m.DNS == nil {
			return nil, fmt.Errorf("%w: %q: a wildcard name needs DNS (DNS-01)", ErrConfig, d)
		}
		out = append(out, d)
	}
	return out, nil
}

func (m *Manager) validate() ([]string, error) {
	domains, err := m.domains()
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(m.Email) == "" {
		return nil, fmt.Errorf("%w: no Email for the ACME account", ErrConfig)
	}
	if m.HTTPAddr == "" && m.DNS == nil {
		return nil, fmt.Errorf("%w: no challenge: set HTTPAddr (HTTP-01) or DNS (DNS-01)", ErrConfig)
	}
	return domains, nil
}

// Load implements sni.Source: it returns the certificates obtained or
// loaded so far, the last good one for each domain, from memory. Before
// the first one it returns no entries and no error, so that a Store with
// other sources serves them meanwhile; it never returns files, since
// renewals reach the Store through OnRenew.
func (m *Manager) Load() ([]sni.Entry, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []sni.Entry
	for i, d := range m.Domains {
		c := m.certs[strings.ToLower(strings.TrimSpace(d))]
		if c == nil {
			continue
		}
		out = append(out, sni.Entry{
			Certificate: c,
			Names:       []string{strings.ToLower(strings.TrimSpace(d))},
			Default:     m.Default && i == 0,
			Source:      "acme:" + m.ca(),
		})
	}
	return out, nil, nil
}

// Status reports each domain's state, in the order of Domains.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.Domains))
	for _, d := range m.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		if st := m.status[d]; st != nil {
			out = append(out, *st)
		} else {
			out = append(out, Status{Domain: d})
		}
	}
	return out
}

// Run obtains the certificates that are missing and renews those due,
// then checks again every CheckInterval (RetryInterval after a failure)
// until ctx ends, when it stops everything it started and returns
// ctx.Err(). Failures go to OnError and do not end Run; a bad
// configuration or an HTTPAddr it cannot listen on does, at once.
func (m *Manager) Run(ctx context.Context) error {
	domains, err := m.validate()
	if err != nil {
		return err
	}
	rt, err := m.start(domains)
	if err != nil {
		return err
	}
	defer rt.close()
	for {
		wait := m.checkInterval()
		if err := m.step(ctx, rt); err != nil {
			wait = m.retryInterval()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Check is one step of Run on its own: it obtains what is missing and
// renews what is due, once, listening on HTTPAddr for the time it takes.
// It returns the failures joined (each also reported through OnError),
// and is meant for start-up, before the first Reload, and for tests.
// Calls of Check and steps of Run never overlap; Check must not be called
// while Run listens on HTTPAddr (the address is taken).
func (m *Manager) Check(ctx context.Context) error {
	domains, err := m.validate()
	if err != nil {
		return err
	}
	rt, err := m.start(domains)
	if err != nil {
		return err
	}
	defer rt.close()
	return m.step(ctx, rt)
}

// step checks every domain once through rt and calls OnRenew for each new
// certificate after all are in memory.
func (m *Manager) step(ctx context.Context, rt *runtime) error {
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	var (
		errs    []error
		renewed []Renewal
	)
	for _, d := range rt.domains {
		r, err := m.checkDomain(ctx, rt, d)
		m.record(d, err)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // stopping: not a failure to report
			}
			errs = append(errs, err)
			m.report(err)
		}
		if r != nil {
			renewed = append(renewed, *r)
		}
	}
	for _, r := range renewed {
		m.logger().Info("acme: certificate ready", "domain", r.Domain, "from_ca", r.FromCA,
			"serial", r.Certificate.Leaf.SerialNumber.Text(16), "not_after", r.Certificate.Leaf.NotAfter)
		if m.OnRenew != nil {
			m.OnRenew(r)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) report(err error) {
	if m.OnError != nil {
		m.OnError(err)
		return
	}
	m.logger().Error("acme: certificate check failed; the previous certificate, if any, keeps serving", "err", err)
}

func (m *Manager) record(domain string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status == nil {
		m.status = make(map[string]*Status)
	}
	st := m.status[domain]
	if st == nil {
		st = &Status{Domain: domain}
		m.status[domain] = st
	}
	st.LastCheck = time.Now()
	st.Err = err
	if err != nil {
		st.Failures++
	} else {
		st.Failures = 0
	}
	if c := m.certs[domain]; c != nil {
		st.NotAfter = c.Leaf.NotAfter
	}
}

// checkDomain brings domain's certificate up to date: from Storage, from
// the CA when Storage has none or only one due for renewal. It returns the
// Renewal when the certificate in memory changed.
func (m *Manager) checkDomain(ctx context.Context, rt *runtime, domain string) (*Renewal, error) {
	fromCA := false
	cert, err := rt.load(ctx, domain)
	switch {
	case errors.Is(err, errNotStored):
		if err := rt.cfg.ObtainCertSync(ctx, domain); err != nil {
			return nil, fmt.Errorf("acme: %s: obtain: %w", domain, err)
		}
		fromCA = true
		if cert, err = rt.load(ctx, domain); err != nil {
			return nil, fmt.Errorf("acme: %s: after obtaining: %w", domain, err)
		}
	case err != nil:
		return nil, fmt.Errorf("acme: %s: %w", domain, err)
	}
	// Serve what Storage has before asking the CA, so that a failed
	// renewal still leaves the freshest certificate serving.
	r := m.swap(domain, cert, fromCA)
	if time.Until(cert.Leaf.NotAfter) >= m.renewBefore(cert.Leaf) {
		return r, nil
	}
	// certmagic decides again under the Storage lock with its renewal
	// window ratio, so that a replica that waited for the lock while
	// another renewed does not renew a second time: express RenewBefore
	// in that ratio. Only steps (serialised) read rt.cfg.
	life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore)
	rt.cfg.RenewalWindowRatio = min(1, float64(m.renewBefore(cert.Leaf))/float64(life)+0.001)
	if err := rt.cfg.RenewCertSync(ctx, domain, false); err != nil {
		return r, fmt.Errorf("acme: %s: renew (%s left): %w", domain, time.Until(cert.Leaf.NotAfter).Round(time.Second), err)
	}
	renewed, err := rt.load(ctx, domain)
	if err != nil {
		return r, fmt.Errorf("acme: %s: after renewing: %w", domain, err)
	}
	if r2 := m.swap(domain, renewed, true); r2 != nil {
		if r != nil {
			r2.Previous = r.Previous
		}
		r = r2
	}
	return r, nil
}

// swap makes cert the one served for domain and returns the Renewal, or
// nil if it is the one already served.
func (m *Manager) swap(domain string, cert *tls.Certificate, fromCA bool) *Renewal {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.certs[domain]
	if old != nil && old.Leaf.Equal(cert.Leaf) {
		return nil
	}
	if m.certs == nil {
		m.certs = make(map[string]*tls.Certificate)
	}
	m.certs[domain] = cert
	r := &Renewal{Domain: domain, Certificate: cert, FromCA: fromCA}
	if old != nil {
		r.Previous = old.Leaf
	}
	return r
}
