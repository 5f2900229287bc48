package sni

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// Errors of Peeker.Peek, besides I/O errors and the context's.
var (
	// ErrNotTLS reports a connection whose first bytes are not a TLS
	// handshake record (a plain-text client, HTTP, SSLv2). The bytes read
	// are returned with it, so a caller can still answer as it would
	// have: replayed into a TLS handshake, they fail it the usual way.
	ErrNotTLS = errors.New("sni: not a TLS handshake")
	// ErrHelloTooLarge reports a ClientHello that did not fit in
	// Peeker.MaxBytes.
	ErrHelloTooLarge = errors.New("sni: ClientHello too large")
)

// errPeeked stops the handshake of Peek once the ClientHello is parsed.
var errPeeked = errors.New("sni: ClientHello peeked")

// Default bounds of a Peeker.
const (
	// DefaultPeekTimeout is the Peeker's Timeout when zero: starttls's
	// default handshake timeout, which a ClientHello is part of.
	DefaultPeekTimeout = 15 * time.Second
	// DefaultMaxHello is the Peeker's MaxBytes when zero: 16 KiB, the
	// buffer HAProxy and nginx inspect a ClientHello in, and over ten
	// times a post-quantum (X25519MLKEM768) ClientHello of about 1.3 KB.
	DefaultMaxHello = 16 << 10
)

// Peeker reads the ClientHello that opens a TLS connection without
// answering it, so that the connection can be routed by its server name
// (SNI) before anyone terminates its TLS: passed through, bytes unchanged,
// to a backend that holds the name's keys, or handshaken here. It parses
// with crypto/tls itself, as inetaf/tcpproxy does: a tls.Server over a
// read-only conn that records every byte it reads, whose
// GetConfigForClient keeps the *tls.ClientHelloInfo and aborts the
// handshake. A ClientHello split over several records is reassembled by
// crypto/tls. The zero value is ready to use.
type Peeker struct {
	// Timeout bounds the whole peek. If zero, DefaultPeekTimeout. The
	// context's deadline applies too; the earlier one wins.
	Timeout time.Duration
	// MaxBytes bounds the bytes read from the connection, record headers
	// included. If zero, DefaultMaxHello.
	MaxBytes int
}

func (pk *Peeker) timeout() time.Duration {
	if pk.Timeout > 0 {
		return pk.Timeout
	}
	return DefaultPeekTimeout
}

func (pk *Peeker) maxBytes() int {
	if pk.MaxBytes > 0 {
		return pk.MaxBytes
	}
	return DefaultMaxHello
}

// Peek reads the ClientHello from conn and returns what it says (server
// name as the client sent it, to be compared case-insensitively; ALPN
// protocols; versions; ...; its Conn field is conn) and every
// byte it read, in order: the ClientHello and whatever the client sent
// with it, for the caller to replay to whoever handles the connection
// next. Nothing is written to conn: a failed peek sends no alert.
//
// The bytes read are returned on error too, always a prefix of what the
// client sent. The error wraps ErrNotTLS when the first record is not a
// TLS handshake, ErrHelloTooLarge when MaxBytes were read without a
// complete ClientHello, the context's error when ctx ended, or the read
// error (a deadline, end of file) or crypto/tls's parse error.
//
// Peek sets conn's read deadline to the earlier of Timeout and ctx's
// deadline, and clears it before it returns; cancelling ctx makes the
// pending read fail at once. It starts no goroutine that outlives it.
func (pk *Peeker) Peek(ctx context.Context, conn net.Conn) (*tls.ClientHelloInfo, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("sni: peek: %w", err)
	}
	deadline := time.Now().Add(pk.timeout())
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, nil, fmt.Errorf("sni: peek: setting deadline: %w", err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		conn.SetReadDeadline(time.Unix(1, 0)) // in the past: unblock the read now
	})
	rec := &recorder{Conn: conn, max: pk.maxBytes()}
	hello, err := rec.peek()
	if !stop() {
		<-fired // its deadline must not land after the clearing below
		if hello == nil {
			err = fmt.Errorf("sni: peek: %w (%w)", ctx.Err(), err)
		}
	}
	if cerr := conn.SetReadDeadline(time.Time{}); cerr != nil && err == nil {
		err = fmt.Errorf("sni: peek: clearing deadline: %w", cerr)
	}
	if err != nil {
		return nil, rec.buf, err
	}
	hello.Conn = conn
	return hello, rec.buf, nil
}

// recorder is the conn crypto/tls reads the ClientHello through: it reads
// the client's conn ahead, as much as one read(2) returns (up to max bytes
// in all), records every byte, and hands them to crypto/tls from the
// record; writes (the alert that ends the aborted handshake) go nowhere.
// crypto/tls asks for a record's header and then its body, and grows a
// buffer of its own between the two: reading ahead makes a ClientHello
// that arrived whole cost one read(2), not two or three.
type recorder struct {
	net.Conn // the client's, for its addresses; never written or closed
	buf      []byte
	pos      int // bytes of buf handed to crypto/tls
	max      int
	over     bool // max bytes were read and crypto/tls asked for more
	hello    *tls.ClientHelloInfo
}

// helloChunk is the first read's size: a ClientHello with a post-quantum
// key share (X25519MLKEM768) is about 1.3 KB, most are smaller.
const helloChunk = 2 << 10

// peekConfig aborts every handshake of a peek at its ClientHello, which it
// keeps in the recorder (the conn crypto/tls was given). It holds no state
// and is only read, as by any number of concurrent tls.Servers.
var peekConfig = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
	if r, ok := h.Conn.(*recorder); ok {
		r.hello = h
	}
	return nil, errPeeked
}}

// peek runs the aborted handshake and returns the ClientHello, or the
// reason there is none.
func (r *recorder) peek() (*tls.ClientHelloInfo, error) {
	err := tls.Server(r, peekConfig).Handshake() // no context: no goroutine of crypto/tls's own
	var rhe tls.RecordHeaderError
	switch {
	case r.hello != nil:
		return r.hello, nil
	case r.over:
		return nil, fmt.Errorf("%w: more than %d bytes", ErrHelloTooLarge, r.max)
	case errors.As(err, &rhe):
		return nil, fmt.Errorf("%w: %s", ErrNotTLS, rhe.Msg)
	case err == nil:
		return nil, errors.New("sni: handshake ended without a ClientHello")
	}
	return nil, fmt.Errorf("sni: reading the ClientHello: %w", err)
}

// Read hands crypto/tls the recorded bytes it has not had yet, reading
// more from the client's conn when there are none.
func (r *recorder) Read(p []byte) (int, error) {
	if r.pos == len(r.buf) {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.pos:])
	r.pos += n
	return n, nil
}

// fill makes one read from the client's conn into the free end of buf,
// growing it while max allows.
func (r *recorder) fill() error {
	room := r.max - len(r.buf)
	if room <= 0 {
		r.over = true
		return ErrHelloTooLarge
	}
	if len(r.buf) == cap(r.buf) {
		r.buf = slices.Grow(r.buf, min(room, max(helloChunk, cap(r.buf))))
	}
	free := r.buf[len(r.buf):min(cap(r.buf), len(r.buf)+room)]
	n, err := r.Conn.Read(free)
	r.buf = r.buf[:len(r.buf)+n]
	if n > 0 {
		return nil // an error comes again at the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Write discards p: the peek never answers the client.
func (r *recorder) Write(p []byte) (int, error) { return 0, errPeeked }

// Close does nothing: the conn is the caller's.
func (r *recorder) Close() error { return nil }

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing: Peek
// manages the client conn's deadline itself.
func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }
