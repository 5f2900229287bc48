package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/internal/tlsname"
	"github.com/mailedge/mailedge/sni"
)

// The TLS policy an auditor sets (-tls-ciphers, -tls-compat, -tls-min,
// -ticket-lifetime, -any-alpn), the per-protocol timeouts (-timeouts) and
// the checker, probe and identity options of -backend that map the
// library's fields the gateway would otherwise hide.

// tlsPolicy is the parsed TLS flags, the same for every listener.
type tlsPolicy struct {
	ciphers        cipherList      // -tls-ciphers; nil: the library's default
	compat         bool            // -tls-compat
	minVersion     tlsVersion      // -tls-min; 0: TLS 1.2
	ticketLifetime ticketLifetime  // -ticket-lifetime; 0: crypto/tls's 7 days
	anyALPN        bool            // -any-alpn
	timeouts       protoTimeoutMap // -timeouts, by protocol
}

// apply sets the flags' fields of a listener's policy.
func (tp *tlsPolicy) apply(p *sni.Policy) {
	p.CipherSuites = tp.ciphers
	p.Compatibility = tp.compat
	p.MinVersion = uint16(tp.minVersion)
	p.TicketLifetime = time.Duration(tp.ticketLifetime)
	p.AnyALPN = tp.anyALPN
}

// applyTimeouts sets a listener's timeouts from -timeouts for its
// protocol; those not given keep the library's defaults.
func (tp *tlsPolicy) applyTimeouts(proto string, p *mailedge.Proxy) {
	t, ok := tp.timeouts[proto]
	if !ok {
		return
	}
	p.Server.Timeout = t.PreTLS
	p.Server.HandshakeTimeout = t.Handshake
	p.Bridge.IdleTimeout = t.Idle
}

// cipherList is -tls-ciphers: TLS 1.2 suites by OpenSSL's names
// (ECDHE-RSA-AES128-GCM-SHA256) or Go's (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
// separated by commas or colons as in an OpenSSL cipher string.
type cipherList []uint16

func (c *cipherList) String() string {
	if c == nil {
		return ""
	}
	names := make([]string, len(*c))
	for i, id := range *c {
		names[i] = tlsname.Cipher(id)
	}
	return strings.Join(names, ",")
}

func (c *cipherList) Set(s string) error {
	list, err := parseCiphers(s)
	if err != nil {
		return err
	}
	*c = list
	return nil
}

// parseCiphers reads a list of TLS 1.2 suites that crypto/tls implements;
// an unknown name, a TLS 1.3 suite or an empty list is an error that names
// it.
func parseCiphers(s string) ([]uint16, error) {
	byName := make(map[string]*tls.CipherSuite)
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		byName[strings.ToUpper(cs.Name)] = cs
		byName[strings.ToUpper(tlsname.Cipher(cs.ID))] = cs
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ':' || r == ' ' }) {
		cs, ok := byName[strings.ToUpper(name)]
		switch {
		case !ok:
			return nil, fmt.Errorf("cipher suite %q: unknown (OpenSSL names such as ECDHE-RSA-AES128-GCM-SHA256, or Go's TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name)
		case !slices.Contains(cs.SupportedVersions, tls.VersionTLS12):
			return nil, fmt.Errorf("cipher suite %q: a TLS 1.3 suite; crypto/tls does not let TLS 1.3 suites be chosen (all three are on)", name)
		}
		if !slices.Contains(ids, cs.ID) {
			ids = append(ids, cs.ID)
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("no cipher suite given")
	}
	return ids, nil
}

// tlsVersion is -tls-min: 1.2 or 1.3.
type tlsVersion uint16

func (v *tlsVersion) String() string {
	switch uint16(*v) {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return ""
}

func (v *tlsVersion) Set(s string) error {
	switch strings.TrimPrefix(strings.ToLower(s), "tls") {
	case "1.2", "v1.2":
		*v = tls.VersionTLS12
	case "1.3", "v1.3":
		*v = tls.VersionTLS13
	default:
		return fmt.Errorf("%q: want 1.2 or 1.3", s)
	}
	return nil
}

// ticketLifetime is -ticket-lifetime: a positive duration, or off for no
// session tickets at all.
type ticketLifetime time.Duration

func (l *ticketLifetime) String() string {
	switch {
	case *l < 0:
		return "off"
	case *l == 0:
		return ""
	}
	return time.Duration(*l).String()
}

func (l *ticketLifetime) Set(s string) error {
	if s == "off" {
		*l = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q: want a positive duration like 12h, or off", s)
	}
	if d > 7*24*time.Hour {
		return fmt.Errorf("%q: crypto/tls resumes no session older than 7 days (168h); want at most that", s)
	}
	*l = ticketLifetime(d)
	return nil
}

// protoTimeouts are one protocol's -timeouts; zero keeps the library's
// default.
type protoTimeouts struct {
	PreTLS    time.Duration // starttls.Server.Timeout: the dialogue before TLS
	Handshake time.Duration // starttls.Server.HandshakeTimeout
	Idle      time.Duration // Proxy.Bridge.IdleTimeout; negative: none
}

// protoTimeoutMap is -timeouts, repeatable, one protocol per flag:
// PROTO:pretls=DUR,handshake=DUR,idle=DUR|off.
type protoTimeoutMap map[string]protoTimeouts

func (m *protoTimeoutMap) String() string {
	if m == nil {
		return ""
	}
	var parts []string
	for proto, t := range *m {
		parts = append(parts, fmt.Sprintf("%s:pretls=%s,handshake=%s,idle=%s", proto, t.PreTLS, t.Handshake, t.Idle))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (m *protoTimeoutMap) Set(s string) error {
	proto, t, err := parseTimeouts(s)
	if err != nil {
		return err
	}
	if _, dup := (*m)[proto]; dup {
		return fmt.Errorf("%q: %s given twice", s, proto)
	}
	if *m == nil {
		*m = make(protoTimeoutMap)
	}
	(*m)[proto] = t
	return nil
}

// parseTimeouts reads PROTO:key=DUR,... of -timeouts.
func parseTimeouts(s string) (string, protoTimeouts, error) {
	var t protoTimeouts
	proto, list, ok := strings.Cut(s, ":")
	proto = strings.ToLower(strings.TrimSpace(proto))
	if !ok || list == "" {
		return "", t, fmt.Errorf("%q: want PROTO:pretls=DUR,handshake=DUR,idle=DUR", s)
	}
	if _, known := protocols[proto]; !known {
		return "", t, fmt.Errorf("%q: protocol %q: want smtp, imap or pop3", s, proto)
	}
	fields := map[string]*time.Duration{"pretls": &t.PreTLS, "handshake": &t.Handshake, "idle": &t.Idle}
	for _, kv := range strings.Split(list, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		dst, ok := fields[strings.ToLower(k)]
		if !ok {
			return "", t, fmt.Errorf("%q: unknown timeout %q (want pretls, handshake, idle)", s, k)
		}
		if k == "idle" && v == "off" {
			*dst = -1
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return "", t, fmt.Errorf("%q: %s=%q: want a positive duration like 60s", s, k, v)
		}
		*dst = d
	}
	return proto, t, nil
}

// parseCheckOptions reads the -backend options of the health checker
// (rise=N, fall=N, jitter=F: monitor.Checker's Rise, Fall and Jitter), the
// IMAP probe's mailbox=NAME and examine, and identity=besteffort|strict
// (backend.Dialer.IdentityBestEffort).
func parseCheckOptions(b *backendSpec, o map[string]string) error {
	for key, dst := range map[string]*int{"rise": &b.Rise, "fall": &b.Fall} {
		if v, ok := o[key]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("%s=%q: want a positive integer", key, v)
			}
			*dst = n
		}
	}
	if v, ok := o["jitter"]; ok {
		j, err := parseJitter(v)
		if err != nil {
			return err
		}
		b.Jitter = j
	}
	b.Mailbox = o["mailbox"]
	_, b.Examine = o["examine"]
	if (b.Mailbox != "" || b.Examine) && b.Probe != "imap" {
		return errors.New("mailbox= and examine are options of probe=imap")
	}
	if strings.ContainsAny(b.Mailbox, "\"\\\r\n") {
		return fmt.Errorf("mailbox=%q: quotes, backslashes and line breaks are not allowed", b.Mailbox)
	}
	switch v, ok := o["identity"]; {
	case !ok, v == "strict":
	case v == "besteffort":
		if !b.XCLIENT && !b.IMAPID {
			return errors.New("identity=besteffort applies to xclient or imapid")
		}
		b.IdentityBestEffort = true
	default:
		return fmt.Errorf("identity=%q: want strict or besteffort", v)
	}
	return nil
}

// parseJitter reads jitter=: a fraction of each wait (0.1) or a percentage
// (10%), at most 0.5; 0 or off is none (the Checker's negative).
func parseJitter(v string) (float64, error) {
	if v == "off" {
		return -1, nil
	}
	s, scale := v, 1.0
	if p, ok := strings.CutSuffix(v, "%"); ok {
		s, scale = p, 100
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= 0 && f/scale <= 0.5) { // NaN too
		return 0, fmt.Errorf("jitter=%q: want a fraction of each wait from 0 to 0.5 (or 0%%-50%%, or off)", v)
	}
	if f == 0 {
		return -1, nil
	}
	return f / scale, nil
}

var (
	_ flag.Value = (*cipherList)(nil)
	_ flag.Value = (*tlsVersion)(nil)
	_ flag.Value = (*ticketLifetime)(nil)
	_ flag.Value = (*protoTimeoutMap)(nil)
)
