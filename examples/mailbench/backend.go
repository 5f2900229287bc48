package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// blockSize is the write size of bulk downloads.
const blockSize = 64 << 10

// maxLiteral bounds an IMAP literal the backend accepts.
const maxLiteral = 1 << 20

// backendNames are the services of the backend, in the order they are
// started and printed.
var backendNames = []string{"imap", "smtp", "pop3", "imaps", "auth"}

// backendHandshakeTimeout bounds the TLS handshake of an imaps session.
const backendHandshakeTimeout = 10 * time.Second

// backendServer is the purpose-built plain-text backend every proxy under
// test forwards to: an IMAP-like server (LOGIN, NOOP, CAPABILITY, APPEND, IDLE,
// LOGOUT and XFETCH n, which streams n bytes), an SMTP sink (AUTH PLAIN, DATA)
// and a POP3 responder, all accepting any user. Auth is an nginx mail
// auth_http responder pointing at the IMAP, SMTP or POP3 port. Imaps is
// the IMAP-like server behind implicit TLS (RFC 8314) with the backend's
// own certificate: the tenant server an SNI passthrough proxy forwards
// ClientHellos to unread.
type backendServer struct {
	block     []byte
	listeners []net.Listener
	http      *http.Server
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool // set by closeAll; later accepts are closed at once
}

// serveBackend starts the backend on the given addresses (empty: not
// served), prints "name=addr" lines to out, and serves until ctx ends.
// tlsCfg is the imaps listener's server config (nil: no imaps).
func serveBackend(ctx context.Context, addrs map[string]string, tlsCfg *tls.Config, out io.Writer) error {
	b, bound, err := startBackend(addrs, tlsCfg)
	if err != nil {
		return err
	}
	defer b.close()
	for _, name := range backendNames {
		if bound[name] != "" {
			fmt.Fprintf(out, "%s=%s\n", name, bound[name])
		}
	}
	<-ctx.Done()
	return nil
}

// startBackend listens on every non-empty address and serves in the
// background until close; it returns the bound addresses by name. An
// imaps address needs tlsCfg, the config its sessions are served with.
func startBackend(addrs map[string]string, tlsCfg *tls.Config) (*backendServer, map[string]string, error) {
	if addrs["imaps"] != "" && tlsCfg == nil {
		return nil, nil, errors.New("an imaps listener needs a certificate")
	}
	b := &backendServer{block: bytes.Repeat([]byte("0123456789abcdef"), blockSize/16), conns: make(map[net.Conn]struct{})}
	bound := make(map[string]string)
	for _, name := range backendNames {
		if addrs[name] == "" {
			continue
		}
		l, err := net.Listen("tcp", addrs[name])
		if err != nil {
			b.close()
			return nil, nil, err
		}
		b.listeners = append(b.listeners, l)
		bound[name] = l.Addr().String()
		if name == "auth" {
			b.http = &http.Server{Handler: authHTTP(maps.Clone(bound)), ReadHeaderTimeout: 5 * time.Second}
			b.wg.Go(func() { b.http.Serve(l) })
			continue
		}
		handler := map[string]func(net.Conn){"imap": b.imap, "smtp": b.smtp, "pop3": b.pop3, "imaps": b.imap}[name]
		if name == "imaps" {
			handler = b.serveTLS(tlsCfg, handler)
		}
		b.wg.Go(func() { b.accept(l, handler) })
	}
	return b, bound, nil
}

// close stops the listeners and sessions and waits for their goroutines.
func (b *backendServer) close() {
	if b.http != nil {
		b.http.Close()
	}
	for _, l := range b.listeners {
		l.Close()
	}
	b.closeAll()
	b.wg.Wait()
}

func (b *backendServer) accept(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE: back off
			continue
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Go(func() {
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			c.(*net.TCPConn).SetNoDelay(true)
			handle(c)
		})
	}
}

// serveTLS returns a handler that completes the TLS handshake on the conn
// within backendHandshakeTimeout and hands the TLS conn to handle. The
// raw conn stays the one closeAll closes.
func (b *backendServer) serveTLS(cfg *tls.Config, handle func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		tc := tls.Server(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), backendHandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return
		}
		handle(tc)
	}
}

func (b *backendServer) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for c := range b.conns {
		c.Close()
	}
}

// authHTTP answers nginx's mail auth_http requests: every login is good
// and goes to this backend's port for the protocol nginx names.
func authHTTP(bound map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, ok := bound[strings.ToLower(r.Header.Get("Auth-Protocol"))]
		if !ok {
			w.Header().Set("Auth-Status", "unsupported protocol")
			return
		}
		host, port, _ := net.SplitHostPort(addr)
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	})
}

// imapCommand reads one command line, answering "+" to synchronising
// literals (nginx's proxy sends LOGIN with literals), and returns it with
// the literals inlined.
func imapCommand(r *bufio.Reader, w *bufio.Writer) (string, error) {
	var cmd []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		n, sync, ok := literalSize(line)
		if !ok {
			return string(append(cmd, line...)), nil
		}
		if n > maxLiteral {
			return "", fmt.Errorf("literal of %d octets", n)
		}
		cmd = append(cmd, line[:bytes.LastIndexByte(line, '{')]...)
		if sync {
			w.WriteString("+ go ahead\r\n")
			w.Flush()
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return "", err
		}
		cmd = append(cmd, lit...)
	}
}

// literalSize recognises a line ending in "{n}" or "{n+}".
func literalSize(line []byte) (n int, sync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	num := line[i+1 : len(line)-1]
	sync = true
	if len(num) > 0 && num[len(num)-1] == '+' {
		num, sync = num[:len(num)-1], false
	}
	n, err := strconv.Atoi(string(num))
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, sync, true
}

func (b *backendServer) imap(c net.Conn) {
	r, w := bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)
	w.WriteString("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] mailbench backend ready\r\n")
	for w.Flush() == nil {
		line, err := imapCommand(r, w)
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			w.WriteString("* BAD missing command\r\n")
			continue
		}
		tag, verb := f[0], strings.ToUpper(f[1])
		switch verb {
		case "CAPABILITY":
			w.WriteString("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + " OK CAPABILITY done\r\n")
		case "LOGIN", "AUTHENTICATE", "NOOP", "SELECT", "ID", "APPEND":
			w.WriteString(tag + " OK " + verb + " done\r\n")
		case "LOGOUT":
			w.WriteString("* BYE bye\r\n" + tag + " OK LOGOUT done\r\n")
			w.Flush()
			return
		case "XFETCH":
			if err := b.xfetch(w, tag, f[2:]); err != nil {
				return
			}
		case "IDLE":
			// RFC 2177: the client waits for updates until it says DONE.
			w.WriteString("+ idling\r\n")
			if w.Flush() != nil {
				return
			}
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if !strings.EqualFold(strings.TrimRight(string(line), "\r\n"), "DONE") {
				w.WriteString(tag + " BAD expected DONE\r\n")
				continue
			}
			w.WriteString(tag + " OK IDLE terminated\r\n")
		default:
			w.WriteString(tag + " BAD unknown command\r\n")
		}
	}
}

// xfetch streams n bytes as one IMAP literal.
func (b *backendServer) xfetch(w *bufio.Writer, tag string, args []string) error {
	if len(args) != 1 {
		_, err := w.WriteString(tag + " BAD XFETCH n\r\n")
		return err
	}
	n, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || n < 0 {
		_, err := w.WriteString(tag + " BAD XFETCH n\r\n")
		return err
	}
	fmt.Fprintf(w, "* XFETCH {%d}\r\n", n)
	for n > 0 {
		k := min(n, int64(len(b.block)))
		if _, err := w.Write(b.block[:k]); err != nil {
			return err
		}
		n -= k
	}
	_, err = w.WriteString("\r\n" + tag + " OK XFETCH done\r\n")
	return err
}

func (b *backendServer) smtp(c net.Conn) {
	r, w := bufio.NewReaderSize(c, 64<<10), bufio.NewWriterSize(c, 4096)
	w.WriteString("220 mailbench.invalid ESMTP mailbench backend\r\n")
	for w.Flush() == nil {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			w.WriteString("250-mailbench.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n")
		case "HELO", "MAIL", "RCPT", "RSET", "NOOP", "XCLIENT":
			w.WriteString("250 2.0.0 OK\r\n")
		case "AUTH":
			w.WriteString("235 2.7.0 Authentication successful\r\n")
		case "DATA":
			w.WriteString("354 go ahead\r\n")
			w.Flush()
			if err := sinkData(r); err != nil {
				return
			}
			w.WriteString("250 2.0.0 queued\r\n")
		case "QUIT":
			w.WriteString("221 2.0.0 bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("500 5.5.2 unknown command\r\n")
		}
	}
}

// sinkData reads a DATA body up to the line ".".
func sinkData(r *bufio.Reader) error {
	atStart := true
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			atStart = false // the rest of a long line follows
			continue
		}
		if err != nil {
			return err
		}
		if atStart && len(line) <= 3 && string(bytes.TrimRight(line, "\r\n")) == "." {
			return nil
		}
		atStart = true
	}
}

func (b *backendServer) pop3(c net.Conn) {
	r, w := bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)
	w.WriteString("+OK mailbench backend ready\r\n")
	for w.Flush() == nil {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "CAPA":
			w.WriteString("+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
		case "USER", "PASS", "NOOP", "AUTH":
			w.WriteString("+OK\r\n")
		case "STAT":
			w.WriteString("+OK 0 0\r\n")
		case "QUIT":
			w.WriteString("+OK bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("-ERR unknown command\r\n")
		}
	}
}
