package monitor_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/starttls"
)

// FuzzGreeting feeds arbitrary server bytes to the Greeting probe of each
// protocol through its Dial hook: it must return by its deadline, never
// panic, and never call a greeting good that does not start with the
// protocol's positive status.
func FuzzGreeting(f *testing.F) {
	for _, seed := range []string{
		"220 mx ESMTP\r\n", "220-mx\r\n220 ok\r\n", "421 busy\r\n", "220-a\r\n221 b\r\n",
		"* OK [CAPABILITY IMAP4rev1] ready\r\n", "* PREAUTH hi\r\n", "* BYE no\r\n", "a OK\r\n",
		"+OK POP3\r\n", "-ERR [SYS/TEMP] no\r\n", "2", "\r\n", "220 \x00\xff\r\n",
	} {
		for p := range 3 {
			f.Add(uint8(p), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, proto uint8, data []byte) {
		p := starttls.Protocol(proto % 3)
		probe := monitor.Greeting{Protocol: p, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				server.Write(data)
				server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				io.Copy(io.Discard, server) // the goodbye, if any
				server.Close()
			}()
			return client, nil
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := probe.Probe(ctx, "pipe:0")
		if !r.OK {
			return
		}
		want := map[starttls.Protocol]string{starttls.SMTP: "220", starttls.IMAP: "* OK", starttls.POP3: "+OK"}[p]
		if !bytes.HasPrefix(data, []byte(want)) {
			t.Fatalf("%s greeting %q judged good", p, data)
		}
	})
}
