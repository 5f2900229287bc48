package starttls

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeBackend answers commands line by line like a small mail server and
// records what it received. It closes after QUIT or LOGOUT.
type fakeBackend struct {
	proto    Protocol
	greeting string            // written first, unless empty
	override map[string]string // reply by upper-cased verb, replacing the default
	tr       *transcript
}

// reply returns the answer to one command line and whether to close.
func (f *fakeBackend) reply(line string) (string, bool) {
	tag, verb := "", line
	if f.proto == IMAP {
		tag, verb, _ = strings.Cut(line, " ")
	}
	verb, _, _ = strings.Cut(verb, " ")
	verb = strings.ToUpper(verb)
	if r, ok := f.override[verb]; ok {
		return strings.ReplaceAll(r, "TAG", tag), false
	}
	switch f.proto {
	case SMTP:
		switch verb {
		case "EHLO":
			return "250-backend.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n", false
		case "HELO":
			return "250 backend.test\r\n", false
		case "QUIT":
			return "221 bye\r\n", true
		}
		return "250 2.0.0 ok\r\n", false
	case IMAP:
		switch verb {
		case "CAPABILITY":
			return "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\n" + tag + " OK [CAPABILITY IMAP4rev1 STARTTLS] done\r\n", false
		case "LOGOUT":
			return "* BYE\r\n" + tag + " OK bye\r\n", true
		}
		return tag + " OK " + verb + " done\r\n", false
	}
	switch verb {
	case "CAPA":
		return "+OK caps\r\nUSER\r\nSTLS\r\nPIPELINING\r\n.\r\n", false
	case "QUIT":
		return "+OK bye\r\n", true
	}
	return "+OK\r\n", false
}

func (f *fakeBackend) serve(conn net.Conn) {
	defer conn.Close()
	if f.greeting != "" {
		if _, err := io.WriteString(conn, f.greeting); err != nil {
			return
		}
	}
	br := bufio.NewReader(conn)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return
		}
		l = strings.TrimRight(l, "\r\n")
		f.tr.add(l)
		r, quit := f.reply(l)
		if _, err := io.WriteString(conn, r); err != nil || quit {
			return
		}
	}
}

// handoverCase is one row of the handover table run against a fakeBackend.
type handoverCase struct {
	name    string
	session Session // Conn is filled in
	backend Backend // Conn is filled in
	fake    fakeBackend
	input   string // written by the client before Handover starts
	guarded bool   // HandoverGuarded instead of Handover
	// What the client sees in total (handover plus the returned server
	// conn until the backend closes), and the lines the backend received.
	wantClient  string
	wantBackend []string
	wantErr     error
}

// runHandover plays tc: a client peer and a backend peer on loopback, the
// Handover in between, then a one-way copy of what the returned server conn
// still yields.
func runHandover(t *testing.T, tc handoverCase) {
	t.Helper()
	cProxy, cPeer := tcpPair(t)
	bProxy, bPeer := tcpPair(t)
	fb := tc.fake
	fb.tr = new(transcript)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fb.serve(bPeer)
	}()
	defer wg.Wait()
	if tc.input != "" {
		_, err := io.WriteString(cPeer, tc.input)
		require.NoError(t, err)
	}
	s := tc.session
	s.Conn = cProxy
	b := tc.backend
	b.Conn = bProxy
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handover := Handover
	if tc.guarded {
		handover = HandoverGuarded
	}
	client, server, err := handover(ctx, &s, b)
	var rest []byte
	if tc.wantErr != nil {
		require.ErrorIs(t, err, tc.wantErr)
		assert.Nil(t, client)
		assert.Nil(t, server)
		bPeer.Close()
	} else {
		require.NoError(t, err)
		// The client conn is returned as is, or wrapped with the bytes the
		// client pipelined that the copy must forward.
		if pc, ok := client.(*prefixConn); ok {
			assert.Same(t, cProxy, pc.Conn)
			assert.Positive(t, pc.Buffered())
		} else {
			assert.Same(t, cProxy, client)
		}
		// The client-to-backend half of the bridge, for bytes the client
		// sent that Handover left unread.
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(server, client)
		}()
		rest, err = io.ReadAll(server)
		require.NoError(t, err)
		cProxy.Close()
	}
	got, err := io.ReadAll(cPeer)
	require.NoError(t, err)
	assert.Equal(t, tc.wantClient, string(got)+string(rest))
	wg.Wait()
	assert.Equal(t, tc.wantBackend, fb.tr.get())
}
