package acme

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
)

// errNotStored is returned by runtime.load when Storage holds no
// certificate for the domain.
var errNotStored = errors.New("acme: no certificate in storage")

// runtime is what Run and Check build for their duration: certmagic's
// Config with a Cache of its own, the ACME issuer and the HTTP-01 server.
type runtime struct {
	domains []string
	storage certmagic.Storage
	cache   *certmagic.Cache
	cfg     *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	srv     *http.Server
	served  sync.WaitGroup
	hs      *handlerState
}

// handlerState is the issuer HTTPHandler answers with while Run or Check
// runs.
type handlerState struct {
	issuer atomic.Pointer[certmagic.ACMEIssuer]
}

// HTTPHandler returns a handler that answers the CA's HTTP-01 requests
// (/.well-known/acme-challenge/) while Run or Check runs, and passes every
// other request to next (if nil, 404). Mount it on the application's own
// server at HTTPAddr and set ExternalHTTP. With a shared Storage, it also
// answers the challenges of other replicas.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if iss := m.handler.issuer.Load(); iss != nil && iss.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// start builds the runtime, listening on HTTPAddr unless ExternalHTTP.
func (m *Manager) start(domains []string) (*runtime, error) {
	storage, err := m.storage()
	if err != nil {
		return nil, err
	}
	rt := &runtime{domains: domains, storage: storage, hs: &m.handler}
	zl := newZapLogger(m.logger())
	var ln net.Listener
	httpHost, httpPort := "", 0
	if m.HTTPAddr != "" {
		if !m.ExternalHTTP {
			if ln, err = net.Listen("tcp", m.HTTPAddr); err != nil {
				return nil, fmt.Errorf("acme: HTTP-01 listener: %w", err)
			}
			// The port actually bound (HTTPAddr may say :0): certmagic's
			// own solver then finds it taken, and leaves it to us.
			httpHost, _, _ = net.SplitHostPort(m.HTTPAddr)
			httpPort = ln.Addr().(*net.TCPAddr).Port
		} else {
			host, port, err := net.SplitHostPort(m.HTTPAddr)
			if err != nil {
				return nil, fmt.Errorf("%w: HTTPAddr %q: %v", ErrConfig, m.HTTPAddr, err)
			}
			httpHost = host
			if httpPort, err = strconv.Atoi(port); err != nil {
				return nil, fmt.Errorf("%w: HTTPAddr %q: port: %v", ErrConfig, m.HTTPAddr, err)
			}
		}
	}
	// The Cache starts certmagic's maintenance goroutine; it stays idle
	// (no certificate is ever cached in it: the Manager serves through
	// sni) and stops in close.
	rt.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return rt.cfg, nil },
		Logger:           zl,
	})
	keyType := certmagic.P256
	if m.KeyType == RSA {
		keyType = certmagic.RSA2048
	}
	rt.cfg = certmagic.New(rt.cache, certmagic.Config{
		Storage:    storage,
		KeySource:  certmagic.StandardKeyGenerator{KeyType: keyType},
		Logger:     zl,
		DisableARI: true, // renewal is RenewBefore, the same on every replica
		OnEvent:    func(context.Context, string, map[string]any) error { return nil },
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      m.ca(),
		TestCA:                  m.ca(), // never fall back to a staging CA
		Email:                   m.Email,
		Profile:                 m.Profile,
		Agreed:                  true,
		TrustedRoots:            m.RootCAs,
		DisableTLSALPNChallenge: true,
		DisableHTTPChallenge:    m.HTTPAddr == "",
		ListenHost:              httpHost,
		AltHTTPPort:             httpPort,
		Logger:                  zl,
	}
	if m.DNS != nil {
		tmpl.DNS01Solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        m.DNS,
			Resolvers:          m.DNSResolvers,
			PropagationTimeout: m.DNSPropagationTimeout,
			Logger:             zl,
		}}
	}
	rt.issuer = certmagic.NewACMEIssuer(rt.cfg, tmpl)
	rt.cfg.Issuers = []certmagic.Issuer{rt.issuer}
	m.handler.issuer.Store(rt.issuer)
	if ln != nil {
		rt.srv = &http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
		rt.srv.SetKeepAlivesEnabled(false)
		rt.served.Add(1)
		go rt.serveHTTP01(ln)
	}
	return rt, nil
}

// serveHTTP01 is the HTTP-01 server's accept loop; named for stack dumps.
func (rt *runtime) serveHTTP01(ln net.Listener) {
	defer rt.served.Done()
	_ = rt.srv.Serve(ln) // ends with close
}

// close stops the HTTP-01 server and certmagic's Cache, and waits for
// both.
func (rt *runtime) close() {
	rt.hs.issuer.CompareAndSwap(rt.issuer, nil)
	if rt.srv != nil {
		rt.srv.Close()
		rt.served.Wait()
	}
	rt.cache.Stop()
}

// load reads domain's certificate and key from Storage (the ground truth
// every replica shares).
func (rt *runtime) load(ctx context.Context, domain string) (*tls.Certificate, error) {
	key := rt.issuer.IssuerKey()
	certPEM, err := rt.storage.Load(ctx, certmagic.StorageKeys.SiteCert(key, domain))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotStored
	}
	if err != nil {
		return nil, fmt.Errorf("storage: certificate: %w", err)
	}
	keyPEM, err := rt.storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(key, domain))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotStored
	}
	if err != nil {
		return nil, fmt.Errorf("storage: private key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Not err's text: it could quote key material.
		return nil, fmt.Errorf("storage: the certificate and key of %s do not form a pair", domain)
	}
	return &cert, nil
}
