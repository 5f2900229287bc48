package starttls

import (
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// Sessions for the three client-side rows of the handover table.
var (
	implicitTLS = Session{TLS: true, Implicit: true}
	proxyTLS    = Session{TLS: true}
)

func withProto(s Session, p Protocol) Session {
	s.Protocol = p
	return s
}

func TestHandoverSMTP(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	const (
		greet    = "220 backend.test ESMTP\r\n"
		pipeline = "EHLO client.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n"
		ehlo     = "250-backend.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
		okOK221  = "250 2.0.0 ok\r\n250 2.0.0 ok\r\n221 bye\r\n"
	)
	fake := fakeBackend{proto: SMTP, greeting: greet}
	sent := []string{"EHLO client.test", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "QUIT"}
	plain := Session{Protocol: SMTP, HeloVerb: "EHLO", Helo: "client.test"}
	refusing := fakeBackend{proto: SMTP, greeting: "421 4.3.2 too busy\r\n"}
	unavailable := "421 4.3.2 localhost Service not available\r\n"
	tests := []handoverCase{
		{name: "implicit/plain backend", session: withProto(implicitTLS, SMTP), fake: fake,
			input: pipeline, wantClient: greet + ehlo + okOK221, wantBackend: sent},
		{name: "implicit/upgraded backend replays saved greeting", session: withProto(implicitTLS, SMTP),
			backend: Backend{Greeting: []byte("220-pre.test\r\n220 ready\r\n"), Upgraded: true},
			fake:    fakeBackend{proto: SMTP}, input: pipeline,
			wantClient: "220-pre.test\r\n220 ready\r\n" + ehlo + okOK221, wantBackend: sent},
		{name: "implicit/HELO first is not filtered", session: withProto(implicitTLS, SMTP), fake: fake,
			input: "HELO c\r\nQUIT\r\n", wantClient: greet + "250 backend.test\r\n221 bye\r\n",
			wantBackend: []string{"HELO c", "QUIT"}},
		{name: "implicit/refusing backend", session: withProto(implicitTLS, SMTP), fake: refusing,
			wantClient: unavailable, wantErr: ErrRefused},
		{name: "implicit/saved refusal", session: withProto(implicitTLS, SMTP), fake: fakeBackend{proto: SMTP},
			backend:    Backend{Greeting: []byte("554 5.7.1 no\r\n")},
			wantClient: unavailable, wantErr: ErrRefused},
		{name: "starttls/greeting swallowed, EHLO filtered", session: withProto(proxyTLS, SMTP), fake: fake,
			input: pipeline, wantClient: ehlo + okOK221, wantBackend: sent},
		{name: "starttls/refusing backend", session: withProto(proxyTLS, SMTP), fake: refusing,
			wantClient: unavailable, wantErr: ErrRefused},
		{name: "plain/EHLO replayed and swallowed, pending forwarded", session: withPending(plain, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n"),
			fake: fake, wantClient: okOK221, wantBackend: sent},
		{name: "plain/HELO replayed", session: withPending(Session{Protocol: SMTP, HeloVerb: "helo", Helo: "c"}, "QUIT\r\n"),
			fake: fake, wantClient: "221 bye\r\n", wantBackend: []string{"HELO c", "QUIT"}},
		{name: "plain/second EHLO in pending is filtered", session: withPending(plain, "EHLO again\r\nQUIT\r\n"),
			fake: fake, wantClient: ehlo + "221 bye\r\n", wantBackend: []string{"EHLO client.test", "EHLO again", "QUIT"}},
		{name: "plain/replayed EHLO refused", session: withPending(plain, "QUIT\r\n"),
			fake:       fakeBackend{proto: SMTP, greeting: greet, override: map[string]string{"EHLO": "550 no\r\n"}},
			wantClient: unavailable, wantBackend: []string{"EHLO client.test"}, wantErr: ErrRefused},
		{name: "plain/refusing backend", session: withPending(plain, "QUIT\r\n"), fake: refusing,
			wantClient: unavailable, wantErr: ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runHandover(t, tt) })
	}
}

func withPending(s Session, p string) Session {
	s.Pending = []byte(p)
	return s
}

func TestHandoverIMAP(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	const (
		greet    = "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] backend ready\r\n"
		pipeline = "a1 CAPABILITY\r\na2 NOOP\r\na3 LOGOUT\r\n"
		answers  = "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK [CAPABILITY IMAP4rev1] done\r\na2 OK NOOP done\r\n* BYE\r\na3 OK bye\r\n"
		bye      = "* BYE [UNAVAILABLE] Service not available\r\n"
	)
	fake := fakeBackend{proto: IMAP, greeting: greet}
	sent := []string{"a1 CAPABILITY", "a2 NOOP", "a3 LOGOUT"}
	tests := []handoverCase{
		{name: "implicit/greeting code and CAPABILITY filtered", session: withProto(implicitTLS, IMAP), fake: fake,
			input: pipeline, wantClient: "* OK [CAPABILITY IMAP4rev1] backend ready\r\n" + answers, wantBackend: sent},
		{name: "implicit/upgraded backend: stale code dropped", session: withProto(implicitTLS, IMAP),
			backend: Backend{Greeting: []byte("* OK [CAPABILITY IMAP4rev1 STARTTLS] pre-TLS\r\n"), Upgraded: true},
			fake:    fakeBackend{proto: IMAP}, input: "a1 LOGIN u p\r\na2 LOGOUT\r\n",
			wantClient:  "* OK pre-TLS\r\na1 OK LOGIN done\r\n* BYE\r\na2 OK bye\r\n",
			wantBackend: []string{"a1 LOGIN u p", "a2 LOGOUT"}},
		{name: "implicit/first command split between pending and conn", session: withPending(withProto(implicitTLS, IMAP), "a1 CAPA"),
			fake: fake, input: "BILITY\r\na2 NOOP\r\na3 LOGOUT\r\n",
			wantClient: "* OK [CAPABILITY IMAP4rev1] backend ready\r\n" + answers, wantBackend: sent},
		{name: "implicit/BYE greeting", session: withProto(implicitTLS, IMAP),
			fake: fakeBackend{proto: IMAP, greeting: "* BYE busy\r\n"}, wantClient: bye, wantErr: ErrRefused},
		{name: "implicit/PREAUTH greeting", session: withProto(implicitTLS, IMAP),
			fake: fakeBackend{proto: IMAP, greeting: "* PREAUTH hi\r\n"}, wantClient: bye, wantErr: ErrPreAuth},
		{name: "implicit/tagged greeting", session: withProto(implicitTLS, IMAP),
			fake: fakeBackend{proto: IMAP, greeting: "a1 OK hi\r\n"}, wantClient: bye, wantErr: ErrBadResponse},
		{name: "starttls/greeting swallowed, CAPABILITY filtered", session: withProto(proxyTLS, IMAP), fake: fake,
			input: pipeline, wantClient: answers, wantBackend: sent},
		{name: "starttls/PREAUTH greeting", session: withProto(proxyTLS, IMAP),
			fake: fakeBackend{proto: IMAP, greeting: "* PREAUTH hi\r\n"}, wantClient: bye, wantErr: ErrRefused},
		{name: "plain/pending CAPABILITY filtered", session: withPending(Session{Protocol: IMAP}, pipeline),
			fake: fake, wantClient: answers, wantBackend: sent},
		{name: "plain/pending LOGIN forwarded", session: withPending(Session{Protocol: IMAP}, "a1 LOGIN u p\r\na2 LOGOUT\r\n"),
			fake: fake, wantClient: "a1 OK LOGIN done\r\n* BYE\r\na2 OK bye\r\n", wantBackend: []string{"a1 LOGIN u p", "a2 LOGOUT"}},
		// HandoverGuarded: the copy filters capability answers (bridge's
		// guard), so the handover returns after the greeting and leaves the
		// client's bytes on the conn; the plain copy of this test passes
		// the answer as the backend sent it.
		{name: "implicit/guarded: no wait for the first command", session: withProto(implicitTLS, IMAP), guarded: true,
			fake: fake, input: pipeline, wantBackend: sent,
			wantClient: "* OK [CAPABILITY IMAP4rev1] backend ready\r\n" +
				"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\na1 OK [CAPABILITY IMAP4rev1 STARTTLS] done\r\na2 OK NOOP done\r\n* BYE\r\na3 OK bye\r\n"},
		{name: "implicit/guarded: pending CAPABILITY still filtered", session: withPending(withProto(implicitTLS, IMAP), pipeline),
			guarded: true, fake: fake, wantBackend: sent,
			wantClient: "* OK [CAPABILITY IMAP4rev1] backend ready\r\n" + answers},
		{name: "plain/BYE greeting", session: withPending(Session{Protocol: IMAP}, "a1 LOGOUT\r\n"),
			fake: fakeBackend{proto: IMAP, greeting: "* BYE busy\r\n"}, wantClient: bye, wantErr: ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runHandover(t, tt) })
	}
}

func TestHandoverPOP3(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	const (
		greet = "+OK POP3 ready <1.2@backend.test>\r\n"
		caps  = "+OK caps\r\nUSER\r\nPIPELINING\r\n.\r\n"
		ERR   = "-ERR [SYS/TEMP] Service not available\r\n"
	)
	fake := fakeBackend{proto: POP3, greeting: greet}
	sent := []string{"CAPA", "USER bob", "QUIT"}
	tests := []handoverCase{
		{name: "implicit/greeting passed, CAPA filtered", session: withProto(implicitTLS, POP3), fake: fake,
			input: "CAPA\r\nUSER bob\r\nQUIT\r\n", wantClient: greet + caps + "+OK\r\n+OK bye\r\n", wantBackend: sent},
		{name: "implicit/upgraded backend replays saved greeting", session: withProto(implicitTLS, POP3),
			backend: Backend{Greeting: []byte(greet), Upgraded: true}, fake: fakeBackend{proto: POP3},
			input: "CAPA\r\nUSER bob\r\nQUIT\r\n", wantClient: greet + caps + "+OK\r\n+OK bye\r\n", wantBackend: sent},
		{name: "implicit/CAPA refused passes", session: withProto(implicitTLS, POP3),
			fake:  fakeBackend{proto: POP3, greeting: greet, override: map[string]string{"CAPA": "-ERR no\r\n"}},
			input: "CAPA\r\nQUIT\r\n", wantClient: greet + "-ERR no\r\n+OK bye\r\n", wantBackend: []string{"CAPA", "QUIT"}},
		{name: "implicit/-ERR greeting", session: withProto(implicitTLS, POP3),
			fake: fakeBackend{proto: POP3, greeting: "-ERR busy\r\n"}, wantClient: ERR, wantErr: ErrRefused},
		{name: "starttls/greeting swallowed", session: withProto(proxyTLS, POP3), fake: fake,
			input: "CAPA\r\nUSER bob\r\nQUIT\r\n", wantClient: caps + "+OK\r\n+OK bye\r\n", wantBackend: sent},
		{name: "plain/pending forwarded", session: withPending(Session{Protocol: POP3}, "USER bob\r\nQUIT\r\n"),
			fake: fake, wantClient: "+OK\r\n+OK bye\r\n", wantBackend: []string{"USER bob", "QUIT"}},
		{name: "plain/-ERR greeting", session: withPending(Session{Protocol: POP3}, "QUIT\r\n"),
			fake: fakeBackend{proto: POP3, greeting: "-ERR busy\r\n"}, wantClient: ERR, wantErr: ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runHandover(t, tt) })
	}
}
