package backend

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/starttls"
)

func TestReadGreeting(t *testing.T) {
	tests := []struct {
		name  string
		proto starttls.Protocol
		in    string
		want  string // greeting on success
		err   error  // sentinel on failure
		code  int
		temp  bool
	}{
		{name: "smtp", proto: starttls.SMTP, in: "220 mx ESMTP\r\n", want: "220 mx ESMTP\r\n"},
		{name: "smtp bare code", proto: starttls.SMTP, in: "220\r\n", want: "220\r\n"},
		{name: "smtp multi-line", proto: starttls.SMTP, in: "220-mx\r\n220-more\r\n220 end\r\nEXTRA", want: "220-mx\r\n220-more\r\n220 end\r\n"},
		{name: "smtp bare LF", proto: starttls.SMTP, in: "220 mx\n", want: "220 mx\n"},
		{name: "smtp 421", proto: starttls.SMTP, in: "421 4.3.2 busy\r\n", err: ErrRefused, code: 421, temp: true},
		{name: "smtp 554 multi-line", proto: starttls.SMTP, in: "554-no\r\n554 really\r\n", err: ErrRefused, code: 554},
		{name: "smtp 250", proto: starttls.SMTP, in: "250 what\r\n", err: ErrProtocol, code: 250},
		{name: "smtp mixed codes", proto: starttls.SMTP, in: "220-a\r\n250 b\r\n", err: ErrProtocol},
		{name: "smtp garbage", proto: starttls.SMTP, in: "HTTP/1.1 400 Bad\r\n", err: ErrProtocol},
		{name: "smtp code 999", proto: starttls.SMTP, in: "999 x\r\n", err: ErrProtocol},
		{name: "smtp separator", proto: starttls.SMTP, in: "220+x\r\n", err: ErrProtocol},
		{name: "smtp eof", proto: starttls.SMTP, in: "220-a\r\n", err: io.ErrUnexpectedEOF},
		{name: "smtp nothing", proto: starttls.SMTP, in: "", err: io.EOF},
		{name: "smtp partial", proto: starttls.SMTP, in: "220 a", err: io.ErrUnexpectedEOF},
		{name: "smtp too many lines", proto: starttls.SMTP, in: strings.Repeat("220-x\r\n", maxReplyLines+1), err: ErrProtocol},
		{name: "smtp too long", proto: starttls.SMTP, in: "220 " + strings.Repeat("x", 300) + "\r\n", err: ErrLineTooLong},
		{name: "imap ok", proto: starttls.IMAP, in: "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", want: "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"},
		{name: "imap ok lower", proto: starttls.IMAP, in: "* ok hi\r\n", want: "* ok hi\r\n"},
		{name: "imap bye", proto: starttls.IMAP, in: "* BYE too many\r\n", err: ErrRefused},
		{name: "imap preauth", proto: starttls.IMAP, in: "* PREAUTH hi\r\n", err: ErrProtocol},
		{name: "imap tagged", proto: starttls.IMAP, in: "a1 OK hi\r\n", err: ErrProtocol},
		{name: "imap OKAY", proto: starttls.IMAP, in: "* OKAY\r\n", err: ErrProtocol},
		{name: "pop3 ok", proto: starttls.POP3, in: "+OK ready <1@x>\r\n", want: "+OK ready <1@x>\r\n"},
		{name: "pop3 bare ok", proto: starttls.POP3, in: "+OK\r\n", want: "+OK\r\n"},
		{name: "pop3 err", proto: starttls.POP3, in: "-ERR busy\r\n", err: ErrRefused},
		{name: "pop3 OKAY", proto: starttls.POP3, in: "+OKAY\r\n", err: ErrProtocol},
		{name: "pop3 smtp", proto: starttls.POP3, in: "220 x\r\n", err: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readGreeting(bufio.NewReader(strings.NewReader(tt.in)), tt.proto, 256)
			if tt.err == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.want, string(got))
				return
			}
			assert.ErrorIs(t, err, tt.err)
			var ge *GreetingError
			if errors.As(err, &ge) {
				assert.Equal(t, tt.code, ge.Code)
				assert.Equal(t, tt.temp, ge.Temporary())
				assert.Equal(t, tt.proto, ge.Protocol)
				assert.Contains(t, ge.Error(), tt.proto.String())
			}
		})
	}
}

func FuzzReadGreeting(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "220-a\r\n220 b\r\n", "421 no\r\n", "* OK hi\r\n", "* PREAUTH\r\n", "+OK\r\n", "-ERR\r\n", "220"} {
		for p := range 3 {
			f.Add(byte(p), s)
		}
	}
	f.Fuzz(func(t *testing.T, p byte, in string) {
		proto := starttls.Protocol(p % 3)
		const max = 128
		got, err := readGreeting(bufio.NewReader(strings.NewReader(in)), proto, max)
		var ge *GreetingError
		if errors.As(err, &ge) {
			if !strings.HasPrefix(in, string(ge.Text)) {
				t.Fatalf("error text %q is not a prefix of the input", ge.Text)
			}
			return
		}
		if err != nil {
			return
		}
		// The greeting is a prefix of the input made of whole lines, each
		// within the limit, and says yes in the protocol's words.
		if !strings.HasPrefix(in, string(got)) || !bytes.HasSuffix(got, []byte("\n")) {
			t.Fatalf("greeting %q is not whole lines from %q", got, in)
		}
		for line := range bytes.Lines(got) {
			if len(line) > max {
				t.Fatalf("line of %d bytes over the limit", len(line))
			}
		}
		ok := map[starttls.Protocol]bool{
			starttls.SMTP: bytes.HasPrefix(got, []byte("220")),
			starttls.IMAP: len(got) >= 4 && strings.EqualFold(string(got[:4]), "* OK"),
			starttls.POP3: bytes.HasPrefix(got, []byte("+OK")),
		}[proto]
		if !ok {
			t.Fatalf("%v greeting %q accepted", proto, got)
		}
	})
}
