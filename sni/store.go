package sni

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"sync"
	"time"
)

// Source is where a Store loads certificates from. Pair, LetsEncrypt and
// PostfixMap are the sources this package provides.
type Source interface {
	// Load reads the source's certificates. It also returns every file and
	// folder it read, so that Watch notices changes, even with an error:
	// a file that is broken now is watched until it is fixed.
	Load() (entries []Entry, files []string, err error)
}

// Pair is a Source for one certificate chain file and its key file.
type Pair struct {
	// CertFile holds the chain, leaf first; KeyFile the private key.
	CertFile, KeyFile string
	// Names are the names to serve the certificate for. If empty, the
	// names in the certificate.
	Names []string
	// Default makes the certificate a default one (see Entry.Default).
	Default bool
}

// Load implements Source.
func (p Pair) Load() ([]Entry, []string, error) {
	files := []string{p.CertFile, p.KeyFile}
	cert, err := LoadPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, files, err
	}
	return []Entry{{Certificate: cert, Names: p.Names, Default: p.Default, Source: p.CertFile}}, files, nil
}

// LetsEncrypt is a Source for a certbot configuration folder; see
// LoadLetsEncrypt.
type LetsEncrypt struct {
	// Dir is the folder that holds live/, usually /etc/letsencrypt.
	Dir string
}

// Load implements Source.
func (l LetsEncrypt) Load() ([]Entry, []string, error) { return loadLetsEncrypt(l.Dir) }

// PostfixMap is a Source for a Postfix SNI map source file; see
// LoadPostfixMap.
type PostfixMap struct {
	// Path is the map file, such as /etc/postfix/sni.
	Path string
}

// Load implements Source.
func (m PostfixMap) Load() ([]Entry, []string, error) { return loadPostfixMap(m.Path) }

// Store serves the certificates its Sources hold: Reload reads them all
// again and swaps the new set in atomically, and Watch does so when their
// files change on disk (renewals by certbot or cert-manager). Handshakes in
// flight keep the set they started with; a reload that fails keeps the old
// set serving.
//
// The set a Store serves is always exactly what its Sources held at the
// last successful reload, so a Store has no Add or Set: a certificate added
// by hand would be dropped silently at the next reload. Put certificates
// you hold in memory in a Resolver instead, or give the Store a Source that
// returns them. For lookups, listing and tls.Config, a Store offers the
// same methods as a Resolver.
//
// Set Sources, Strict and the callbacks before calling Reload or Watch, and
// call Reload once at start-up to fail early on bad files. Store is safe
// for concurrent use and must not be copied after first use.
type Store struct {
	// Sources are loaded in order; entries from all of them form one set.
	Sources []Source
	// Strict refuses handshakes without SNI or for unknown names with
	// ErrNoCertificate instead of serving a default certificate, as
	// Resolver.Strict does. If false, the default is served.
	Strict bool
	// OnError receives the error of each reload Watch attempts that fails.
	// If nil, the error is logged with the standard logger.
	OnError func(error)
	// OnReload is called after each reload Watch performs successfully.
	// If nil, nothing is called.
	OnReload func()

	res    Resolver   // the loaded set; only reloadLocked writes to it
	mu     sync.Mutex // serialises reloads
	stamps map[string]stamp
}

// GetCertificate returns the certificate for hello's server name from the
// loaded set, for use as tls.Config.GetCertificate; see
// Resolver.GetCertificate. Before the first successful reload it returns
// an error wrapping ErrNoCertificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.res.get(hello, s.Strict)
}

// TLSConfig returns a server *tls.Config that takes its certificates from
// the Store, so that every reload reaches new handshakes, and applies p;
// see Resolver.TLSConfig.
func (s *Store) TLSConfig(p Policy) *tls.Config { return p.config(s.GetCertificate) }

// Lookup returns the certificate loaded for name without falling back to
// the default; see Resolver.Lookup.
func (s *Store) Lookup(name string) (*tls.Certificate, bool) { return s.res.Lookup(name) }

// Len returns the number of certificates loaded.
func (s *Store) Len() int { return s.res.Len() }

// Certificates lists every served name with its certificate; see
// Resolver.Certificates.
func (s *Store) Certificates() []Info { return s.res.Certificates() }

// Expiring returns the entries of Certificates whose certificate is no
// longer valid at now+within; see Resolver.Expiring.
func (s *Store) Expiring(now time.Time, within time.Duration) []Info {
	return s.res.Expiring(now, within)
}

// stamp is what Watch remembers of a file: enough to notice an edit, a
// replacement by rename or symlink swap, or a deletion.
type stamp struct {
	fi os.FileInfo // nil when the file is missing
}

func (a stamp) same(b stamp) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == nil && b.fi == nil
	}
	return os.SameFile(a.fi, b.fi) && a.fi.Size() == b.fi.Size() &&
		a.fi.ModTime().Equal(b.fi.ModTime()) && a.fi.Mode() == b.fi.Mode()
}

func statFile(name string) stamp {
	fi, err := os.Stat(name) // follows symlinks: certbot's live/ links into archive/
	if err != nil {
		return stamp{}
	}
	return stamp{fi: fi}
}

// Reload loads every source again and, if all load and the result holds at
// least one usable certificate, replaces the served set in one step. On
// error it returns the error and the previous set keeps serving.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *Store) reloadLocked() error {
	before := make(map[string]stamp, len(s.stamps))
	for name := range s.stamps {
		before[name] = statFile(name)
	}
	var (
		all      []Entry
		files    []string
		firstErr error
	)
	for _, src := range s.Sources {
		entries, f, err := src.Load()
		files = append(files, f...) // even on error, so a fix is noticed
		if err != nil && firstErr == nil {
			firstErr = err
		}
		all = append(all, entries...)
	}
	stamps := make(map[string]stamp, len(files))
	for _, name := range files {
		now := statFile(name)
		if b, ok := before[name]; ok && !b.same(now) {
			now = b // changed while we read it: make the next check reload again
		}
		stamps[name] = now
	}
	s.stamps = stamps
	if firstErr != nil {
		return firstErr
	}
	if len(all) == 0 {
		return fmt.Errorf("%w: the sources hold no certificate", ErrNoCertificate)
	}
	return s.res.Set(all)
}

// ReloadIfChanged reloads when any file read by the last reload has
// changed, appeared or gone, or when nothing was loaded yet. It reports
// whether it reloaded, and the reload's error. It is the single step Watch
// repeats.
func (s *Store) ReloadIfChanged() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.stamps == nil
	for name, old := range s.stamps {
		if !old.same(statFile(name)) {
			changed = true
			break
		}
	}
	if !changed {
		return false, nil
	}
	return true, s.reloadLocked()
}

// Watch polls the files of the sources every interval (if zero or negative,
// one minute) and reloads when one changes, reporting each result through
// OnError and OnReload. It polls rather than using file notifications, which
// miss the symlink swaps that certbot and Kubernetes secret volumes use.
// Watch runs in the caller's goroutine and returns ctx.Err() when ctx ends.
func (s *Store) Watch(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		reloaded, err := s.ReloadIfChanged()
		switch {
		case err != nil && s.OnError != nil:
			s.OnError(err)
		case err != nil:
			log.Printf("sni: reload: %v", err)
		case reloaded && s.OnReload != nil:
			s.OnReload()
		}
	}
}
