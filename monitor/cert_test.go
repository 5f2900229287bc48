package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// expiresIn issues a leaf for testHost valid for d from now (plus a margin
// so whole days round as expected).
func expiresIn(d time.Duration) func(*mailtest.CA) (*mailtest.Leaf, error) {
	return func(ca *mailtest.CA) (*mailtest.Leaf, error) {
		now := time.Now()
		return ca.Issue(mailtest.CertOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(d + time.Hour)}, testHost)
	}
}

func TestCertificateProbeImplicit(t *testing.T) {
	good := newPKI(t, expiresIn(30*24*time.Hour))
	soon := newPKI(t, expiresIn(3*24*time.Hour))
	expired := newPKI(t, func(ca *mailtest.CA) (*mailtest.Leaf, error) { return ca.Expired(mailtest.ECDSA, testHost) })
	other := newPKI(t, nil)
	tests := []struct {
		name   string
		server pki
		probe  Certificate
		kind   error
		reason string
		detail string
	}{
		{name: "valid for 30 days", server: good, probe: Certificate{ServerName: testHost, Roots: good.roots},
			detail: "TLS 1.3, certificate expires in 30 days"},
		{name: "expires in 3 days", server: soon, probe: Certificate{ServerName: testHost, Roots: soon.roots},
			kind: ErrCertExpiring},
		{name: "expiring but threshold off", server: soon, probe: Certificate{ServerName: testHost, Roots: soon.roots, WarnWithin: -1},
			detail: "TLS 1.3, certificate expires in 3 days"},
		{name: "custom threshold", server: good, probe: Certificate{ServerName: testHost, Roots: good.roots, WarnWithin: 60 * 24 * time.Hour},
			kind: ErrCertExpiring},
		{name: "wrong name", server: good, probe: Certificate{ServerName: "other.example.test", Roots: good.roots},
			kind: ErrTLS, reason: "TLS verify failed: x509: certificate is valid for mail.example.test, not other.example.test"},
		{name: "expired", server: expired, probe: Certificate{ServerName: testHost, Roots: expired.roots}, kind: ErrTLS},
		{name: "unknown authority", server: good, probe: Certificate{ServerName: testHost, Roots: other.roots},
			kind: ErrTLS, reason: "TLS verify failed: x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			addr := serveFunc(t, tt.server.server, greets("220 ok\r\n"))
			r := tt.probe.Probe(probeCtx(t, ""), addr)
			if tt.kind == nil {
				require.True(t, r.OK, "%v", r.Err)
				assert.Equal(t, tt.detail, r.Detail)
				return
			}
			assert.False(t, r.OK)
			assert.ErrorIs(t, r.Err, tt.kind)
			if tt.reason != "" {
				assert.True(t, strings.HasPrefix(r.Err.Error(), tt.reason), "got %q; want prefix %q", r.Err, tt.reason)
			}
		})
	}
}

func TestCertificateProbeExpiryReason(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	soon := newPKI(t, expiresIn(3*24*time.Hour))
	addr := serveFunc(t, soon.server, greets("220 ok\r\n"))
	r := Certificate{ServerName: testHost, Roots: soon.roots}.Probe(probeCtx(t, ""), addr)
	require.Error(t, r.Err)
	day := r.Expires.UTC().Format(time.DateOnly)
	assert.Equal(t, "certificate for mail.example.test expires in 3 days ("+day+"), under the 14-day threshold", r.Err.Error())
	expired := newPKI(t, func(ca *mailtest.CA) (*mailtest.Leaf, error) { return ca.Expired(mailtest.ECDSA, testHost) })
	addr = serveFunc(t, expired.server, greets("220 ok\r\n"))
	r = Certificate{ServerName: testHost, Roots: expired.roots}.Probe(probeCtx(t, ""), addr)
	require.Error(t, r.Err)
	assert.Contains(t, r.Err.Error(), "TLS verify failed: x509: certificate has expired or is not yet valid: current time")
}

func TestCertificateProbeStartTLS(t *testing.T) {
	p := newPKI(t, nil)
	tests := []struct {
		name  string
		proto starttls.Protocol
		addr  func(t *testing.T) string
	}{
		{name: "smtp", proto: starttls.SMTP, addr: func(t *testing.T) string { return smtpServer(t, p.server, false, false) }},
		{name: "imap", proto: starttls.IMAP, addr: func(t *testing.T) string { return imapServer(t, p.server, false, false) }},
		{name: "pop3", proto: starttls.POP3, addr: func(t *testing.T) string { return serveFunc(t, nil, pop3Server(p.server, false)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			addr := tt.addr(t)
			r := Certificate{ServerName: testHost, Roots: p.roots, StartTLS: true, Protocol: tt.proto}.Probe(probeCtx(t, ""), addr)
			require.True(t, r.OK, "%v", r.Err)
			assert.Regexp(t, `^TLS 1\.3, certificate expires in (89|90) days$`, r.Detail)
			r = Certificate{ServerName: "other.example.test", Roots: p.roots, StartTLS: true, Protocol: tt.proto}.Probe(probeCtx(t, ""), addr)
			assert.ErrorIs(t, r.Err, ErrTLS)
		})
	}
}
