package starttls

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Python's standard clients do STARTTLS against Serve, verify the server
// certificate against the test CA (ssl.create_default_context checks the
// chain and the host name, here the IP address 127.0.0.1), then talk to the
// scripted backend over TLS and print what they learnt.
var pythonClients = []struct {
	proto  Protocol
	script string
	want   []string // lines of the script's output
	seen   []string // commands the backend received after TLS
}{
	{
		proto: SMTP,
		script: `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="py.test", timeout=20)
s.ehlo()
print(s.has_extn("starttls"))
code, _ = s.starttls(context=ctx)
print(code)
s.ehlo()
print(s.has_extn("auth"), s.sock.version().startswith("TLS"))
s.quit()
`,
		want: []string{"True", "220", "True True"},
		seen: []string{"ehlo py.test", "quit"},
	},
	{
		proto: IMAP,
		script: `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=20)
print("STARTTLS" in m.capabilities, "LOGINDISABLED" in m.capabilities)
typ, _ = m.starttls(ssl_context=ctx)
print(typ)
print("AUTH=PLAIN" in m.capabilities, m.sock.version().startswith("TLS"))
m.logout()
`,
		want: []string{"True True", "OK", "True True"},
	},
	{
		proto: POP3,
		script: `
import poplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
caps = p.capa()
print("STLS" in caps, "USER" in caps)
print(p.stls(context=ctx).decode())
print(p.sock.version().startswith("TLS"))
p.quit()
`,
		want: []string{"True False", "+OK Begin TLS negotiation", "True"},
		seen: []string{"QUIT"},
	},
}

func TestServePythonClients(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	caFile, err := pki.ca.WriteCA(t.TempDir(), "ca")
	require.NoError(t, err)
	for _, pc := range pythonClients {
		t.Run(pc.proto.String(), func(t *testing.T) {
			rs := startRealServer(t, &Server{Protocol: pc.proto, TLSConfig: pki.server, Hostname: "mail.test"})
			host, port, err := net.SplitHostPort(rs.addr)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, python, "-c", pc.script, host, port, caFile).CombinedOutput()
			require.NoError(t, err, "python said:\n%s", out)
			assert.Equal(t, pc.want, strings.Split(strings.TrimSpace(string(out)), "\n"))

			r := <-rs.res
			require.NoError(t, r.err)
			assert.True(t, r.sess.TLS)
			seen := <-rs.seen
			if pc.seen != nil {
				assert.Equal(t, pc.seen, seen)
			}
		})
	}
}
