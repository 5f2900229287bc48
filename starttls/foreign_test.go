package starttls

import (
	"testing"
)

// ALPACA's application layer: a browser's HTTP request, or a ClientHello
// sent to a STARTTLS port, ends the dialogue at once. Nothing is answered,
// not even the replies owed to commands pipelined before it, so that no
// byte the client sent comes back.
func TestForeignProtocol(t *testing.T) {
	hello := string([]byte{0x16, 0x03, 0x01, 0x00, 0xc0, 0x01, 0x00, 0x00, 0xbc, 0x03, 0x03}) + "\r\n"
	for _, p := range []struct {
		proto          Protocol
		host, greeting string
		ok             string // a command and its answer, before the foreign line
		okWant         string
	}{
		{SMTP, "mx.test", smtpGreeting, "NOOP", "250 2.0.0 Ok"},
		{IMAP, "imap.test", imapGreeting, "a NOOP", "a OK NOOP completed"},
		{POP3, "pop.test", pop3Greeting, "NOOP", "+OK"},
	} {
		t.Run(p.proto.String(), func(t *testing.T) {
			runDialogues(t, p.proto, p.host, []dialogueCase{
				{name: "HTTP request first", input: crlf("POST /mail HTTP/1.1", "Host: mail.example.com", "", "QUIT"),
					want: crlf(p.greeting), wantErr: ErrForeignProtocol},
				{name: "HTTP request pipelined after a command", input: crlf(p.ok, "GET / HTTP/1.0"),
					want: crlf(p.greeting), wantErr: ErrForeignProtocol},
				{name: "HTTP/2 preface", input: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
					want: crlf(p.greeting), wantErr: ErrForeignProtocol},
				{name: "CONNECT through a proxy", input: crlf("CONNECT mail.example.com:25 HTTP/1.1"),
					want: crlf(p.greeting), wantErr: ErrForeignProtocol},
				{name: "TLS ClientHello before STARTTLS", input: hello,
					want: crlf(p.greeting), wantErr: ErrForeignProtocol},
			})
		})
	}
}
