package mailedge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// ErrProxyHeader is wrapped by the error of a connection from a trusted
// balancer (see ProxyListener) that did not open with a valid PROXY header
// within the timeout.
var ErrProxyHeader = errors.New("mailedge: missing or invalid PROXY header")

// defaultHeaderTimeout bounds the wait for a trusted source's header when
// ProxyListener is given no timeout.
const defaultHeaderTimeout = 5 * time.Second

// Bounds of a PROXY header: the longest v1 line the specification allows,
// and the most bytes accepted after the 16-byte v2 prefix (addresses and
// TLVs), as go-proxyproto's MaxV2HeaderSize.
const (
	maxV1Header = 107
	maxV2Body   = 4096
)

// sigV2 opens every PROXY v2 header.
var sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ProxyListener wraps l for a listener behind another balancer that sends
// a PROXY protocol header (v1 or v2) first, so Proxy, its Limiter and the
// logs see the real client address:
//
//   - a connection from a source in from must open with a header within
//     timeout (if zero or negative, 5 seconds); otherwise its reads and
//     writes fail with ErrProxyHeader and Proxy closes it unanswered. Accept
//     returns it at once; the header is read by its first Read, Write,
//     RemoteAddr, LocalAddr or Buffered, so a slow balancer never holds up
//     Accept (Proxy reads it on the connection's worker);
//   - a connection from anywhere else is returned as Accept gave it: nothing
//     is read from it and nothing is awaited, so a server-first protocol's
//     greeting goes out at once. A header such a client sends is no header:
//     it reaches the protocol's dialogue as a bad command, and the address
//     stays the socket's, so a client cannot claim another one;
//   - a v2 header whose TLVs are malformed (a TLV running past the header
//     end, or not ending at it) is refused: go-proxyproto parses TLVs only
//     when asked, so they are checked here.
//
// Mail servers speak first, so the header is awaited before the greeting
// is written, never guessed from the first bytes. It is read byte-exactly,
// never past its end, so that once it is read the connection is the socket
// itself plus the header's addresses: its NetConn is the socket and its
// Buffered is 0, and Proxy goes on on the socket, where the bridge can wait
// for readiness (an idle session parks in the Poller), splice(2) and pass
// a half-close on.
func ProxyListener(l net.Listener, from []netip.Prefix, timeout time.Duration) net.Listener {
	if timeout <= 0 {
		timeout = defaultHeaderTimeout
	}
	return &proxyListener{Listener: l, from: from, timeout: timeout}
}

// proxyListener is the net.Listener ProxyListener returns.
type proxyListener struct {
	net.Listener
	from    []netip.Prefix
	timeout time.Duration
}

var _ net.Listener = (*proxyListener)(nil)

// Accept returns the next connection: as it is from an untrusted source,
// wrapped to read its header from a trusted one.
func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ip := IPOf(c.RemoteAddr())
	for _, n := range l.from {
		if ip.IsValid() && n.Contains(ip) {
			return &inboundConn{Conn: c, timeout: l.timeout}, nil
		}
	}
	return c, nil
}

// inboundConn is a connection from a trusted balancer. Its first use reads
// the PROXY header; from then on it reports the header's addresses and
// passes everything else straight to the socket.
type inboundConn struct {
	net.Conn
	timeout time.Duration

	once     sync.Once
	err      error    // the header's; set once
	src, dst net.Addr // from the header; nil: the socket's (LOCAL, UNKNOWN)

	mu       sync.Mutex
	deadline time.Time // the read deadline the user set, restored after the header
	cutOff   bool      // the header's wait was cut short (see headerContext)
}

var _ net.Conn = (*inboundConn)(nil)

// header reads the header once and returns its error.
func (c *inboundConn) header() error {
	c.once.Do(func() { c.err = c.readHeader() })
	return c.err
}

// headerContext is header with ctx able to cut the wait short: its end
// expires the read deadline. If ctx ended, the connection is done for even
// if the header came.
func (c *inboundConn) headerContext(ctx context.Context) error {
	stop := context.AfterFunc(ctx, c.cut)
	err := c.header()
	if !stop() {
		return fmt.Errorf("mailedge: PROXY header: %w", context.Cause(ctx))
	}
	return err
}

// cut makes a header read still to come, or running, fail at once.
func (c *inboundConn) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutOff = true
	c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// readHeader reads and checks the header within the timeout, never
// extending a read deadline the user set, and restores that deadline.
func (c *inboundConn) readHeader() error {
	c.mu.Lock()
	d := time.Now().Add(c.timeout)
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		d = c.deadline
	}
	if c.cutOff {
		d = time.Unix(1, 0)
	}
	err := c.Conn.SetReadDeadline(d)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	h, err := readProxyHeader(c.Conn)
	c.mu.Lock()
	rerr := c.Conn.SetReadDeadline(c.deadline)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w from %v: %w", ErrProxyHeader, c.Conn.RemoteAddr(), err)
	}
	if !h.Command.IsLocal() && h.SourceAddr != nil && h.DestinationAddr != nil {
		c.src, c.dst = h.SourceAddr, h.DestinationAddr
	}
	return rerr
}

// readProxyHeader reads one PROXY header from r, v1 or v2, without reading
// a byte past its end, and parses it with go-proxyproto.
func readProxyHeader(r io.Reader) (*proxyproto.Header, error) {
	// The shortest header, "PROXY UNKNOWN\r\n", has 15 bytes; a v2 header
	// has at least 16.
	b := make([]byte, 15, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	var err error
	switch {
	case bytes.HasPrefix(b, []byte("PROXY ")):
		b, err = readV1Rest(r, b)
	case bytes.HasPrefix(b, sigV2):
		b, err = readV2Rest(r, b)
	default:
		return nil, errors.New("no PROXY signature")
	}
	if err != nil {
		return nil, err
	}
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), len(b)))
	if err != nil {
		return nil, err
	}
	if _, err := h.TLVs(); err != nil {
		return nil, err
	}
	return h, nil
}

// readV1Rest reads the rest of the v1 line whose start is b. A line ends
// with CRLF, so while b does not, at least two more bytes must come (one
// after a CR): reading that many never reads past the line.
func readV1Rest(r io.Reader, b []byte) ([]byte, error) {
	for !bytes.HasSuffix(b, []byte("\r\n")) {
		if bytes.IndexByte(b, '\n') >= 0 || len(b) >= maxV1Header {
			return nil, errors.New("malformed v1 header")
		}
		n := 2
		if b[len(b)-1] == '\r' {
			n = 1
		}
		n = min(n, maxV1Header-len(b))
		b = append(b, make([]byte, n)...)
		if _, err := io.ReadFull(r, b[len(b)-n:]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// readV2Rest reads the rest of the v2 header whose first 15 bytes are b:
// the last byte of the fixed part, then as many as its length field says.
func readV2Rest(r io.Reader, b []byte) ([]byte, error) {
	b = b[:16]
	if _, err := io.ReadFull(r, b[15:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if n > maxV2Body {
		return nil, fmt.Errorf("v2 header of %d bytes, over %d", n, maxV2Body)
	}
	b = append(b, make([]byte, n)...)
	if _, err := io.ReadFull(r, b[16:]); err != nil {
		return nil, err
	}
	return b, nil
}

// Read reads from the socket once the header is read.
func (c *inboundConn) Read(p []byte) (int, error) {
	if err := c.header(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write writes to the socket once the header is read: nothing is said to
// a connection whose header is missing.
func (c *inboundConn) Write(p []byte) (int, error) {
	if err := c.header(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// RemoteAddr returns the header's source address, or the socket's peer
// for a LOCAL or UNKNOWN header or when the header failed.
func (c *inboundConn) RemoteAddr() net.Addr {
	if c.header() == nil && c.src != nil {
		return c.src
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr returns the header's destination address, or the socket's.
func (c *inboundConn) LocalAddr() net.Addr {
	if c.header() == nil && c.dst != nil {
		return c.dst
	}
	return c.Conn.LocalAddr()
}

// SetDeadline sets the socket's deadlines; the header's own read deadline
// never extends it.
func (c *inboundConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the socket's read deadline; the header's own never
// extends it.
func (c *inboundConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite shuts down the socket's write side, so a bridge can pass an
// end of stream on.
func (c *inboundConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("mailedge: %T cannot half-close", c.Conn)
}

// NetConn returns the socket. Read through it only when Buffered is 0.
func (c *inboundConn) NetConn() net.Conn { return c.Conn }

// Buffered reads the header if that is still to do, and returns 0 when it
// was valid: nothing is read ahead, so a bridge may use NetConn directly.
// After a failed header it returns 1, so that readers go through Read and
// get the header's error.
func (c *inboundConn) Buffered() int {
	if c.header() != nil {
		return 1
	}
	return 0
}
