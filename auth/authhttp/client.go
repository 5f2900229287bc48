package authhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
)

// Defaults of a Client's zero fields.
const (
	// DefaultTimeout bounds one exchange with the auth service, as nginx's
	// auth_http_timeout does by default.
	DefaultTimeout = 60 * time.Second
	// DefaultMaxResponseBytes bounds the answer read: status line, header
	// and body.
	DefaultMaxResponseBytes = 16 << 10
	// MaxWait is the longest Auth-Wait honoured; a longer one is cut to it.
	MaxWait = 60 * time.Second
	// maxIdleConns bounds the default transport's idle connections.
	maxIdleConns = 32
	// maxAsks bounds the questions of one Authenticate when the service
	// keeps answering "Auth-Status: WAIT".
	maxAsks = 10
)

// Errors of Authenticate. Every error it returns wraps one of these, or the
// context's error, or the transport's (a net.Error, a TLS error) unless
// that error's text held the password: it is then reported by its text,
// scrubbed, and no longer wrapped.
var (
	// ErrConfig reports a Client that cannot ask: a URL that is not http
	// or https, an unknown mechanism in the request.
	ErrConfig = errors.New("authhttp: invalid configuration")
	// ErrStatus reports an HTTP status other than 2xx.
	ErrStatus = errors.New("authhttp: auth service answered an HTTP error")
	// ErrTooLarge reports an answer over MaxResponseBytes.
	ErrTooLarge = errors.New("authhttp: answer too large")
	// ErrResponse reports an answer that cannot be used: a control
	// character in a header this package reads, an OK without a valid
	// Auth-Server and Auth-Port, a malformed HTTP header.
	ErrResponse = errors.New("authhttp: invalid answer")
)

// Client is an auth.Authenticator that asks an HTTP service speaking
// nginx's auth_http protocol. Only URL is required. A Client is safe for
// concurrent use; do not change or copy it once in use.
type Client struct {
	// URL is the auth service's http or https URL, as nginx's auth_http.
	URL string
	// Header holds extra headers sent with every request, as nginx's
	// auth_http_header (for example a shared secret).
	Header http.Header
	// Timeout bounds one exchange with the service: connect, request and
	// the whole answer. If zero, DefaultTimeout. The context's deadline
	// applies too; the earlier one wins.
	Timeout time.Duration
	// MaxResponseBytes bounds the answer: its status line and header, and
	// its body, which is read (up to the bound) and ignored so that the
	// connection can be used again. If zero, DefaultMaxResponseBytes.
	MaxResponseBytes int
	// PassClientCert sends the verified client certificate as
	// Auth-SSL-Cert (PEM, URL-escaped), as nginx's
	// auth_http_pass_client_cert.
	PassClientCert bool
	// Dialer is the template of the backend of an allowed login: the
	// Result's Backend is a copy with Addr set to Auth-Server:Auth-Port and
	// Protocol to the request's. If nil, a zero Dialer (plain text, no
	// PROXY header). A TLS backend reached by IP address needs its
	// TLSConfig.ServerName set, or a certificate for the IP.
	Dialer *backend.Dialer
	// Transport makes the HTTP requests. If nil, the Client's own
	// *http.Transport: keep-alive connections (at most 32 idle), no
	// environment proxy, no compression, HTTP/2 over https, the system
	// roots for https. Redirects are never followed either way.
	Transport http.RoundTripper

	once      sync.Once
	transport *http.Transport
}

// Authenticate asks the auth service about req and returns its decision.
// An error means the service could not decide (down, slow, an answer that
// breaks the protocol); its text never holds req's password, nor the
// Auth-Pass of an answer. After "Auth-Status: WAIT" it asks again, within
// ctx, after the answer's Auth-Wait.
func (c *Client) Authenticate(ctx context.Context, req *auth.Request) (*auth.Result, error) {
	red := redactor{}.with(string(req.Password))
	for asks := 1; ; asks++ {
		d, err := c.ask(ctx, req, red)
		if err != nil {
			return nil, err
		}
		if !d.retry {
			return d.result, nil
		}
		if asks == maxAsks {
			return nil, red.fail(ErrResponse, fmt.Sprintf("still Auth-Status: WAIT after %d questions", asks))
		}
		if err := sleep(ctx, d.wait); err != nil {
			return nil, red.cause("waiting to ask again", err)
		}
	}
}

// CloseIdleConnections closes the idle connections to the auth service
// (and so their goroutines) of the default transport, or of Transport if it
// has such a method. The Client stays usable.
func (c *Client) CloseIdleConnections() {
	rt := c.Transport
	if rt == nil {
		c.once.Do(c.newTransport)
		rt = c.transport
	}
	if ci, ok := rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// ask makes one exchange with the service.
func (c *Client) ask(ctx context.Context, req *auth.Request, red redactor) (decision, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	hreq, err := c.newRequest(ctx, req)
	if err != nil {
		return decision{}, err // ErrConfig: says nothing of the request
	}
	resp, err := c.roundTripper().RoundTrip(hreq)
	if err != nil {
		return decision{}, red.transportError(err)
	}
	defer resp.Body.Close()

	limit := int64(c.maxResponseBytes())
	head := headSize(resp)
	if head > limit {
		return decision{}, red.fail(ErrTooLarge, fmt.Sprintf("header of %d bytes, limit %d", head, limit))
	}
	// Read the body to its end, so that the connection goes back to the
	// pool, unless it breaks the limit.
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, limit-head+1))
	if err != nil {
		return decision{}, red.transportError(err)
	}
	if head+n > limit {
		return decision{}, red.fail(ErrTooLarge, fmt.Sprintf("over %d bytes", limit))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decision{}, red.fail(ErrStatus, fmt.Sprintf("HTTP status %d", resp.StatusCode))
	}
	d, err := parseResponse(resp.Header, req, c.Dialer)
	if err != nil {
		// The error may quote Auth-Server or Auth-Port: not the answer's
		// password, even a broken service's.
		for _, p := range resp.Header["Auth-Pass"] {
			red = red.with(p)
		}
		return decision{}, red.fail(ErrResponse, err.Error())
	}
	return d, nil
}

// headSize is about the size of resp's status line and header on the wire.
func headSize(resp *http.Response) int64 {
	n := int64(len(resp.Proto) + 1 + len(resp.Status) + 2 + 2)
	for k, vs := range resp.Header {
		for _, v := range vs {
			n += int64(len(k) + 2 + len(v) + 2)
		}
	}
	return n
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) maxResponseBytes() int {
	if c.MaxResponseBytes > 0 {
		return c.MaxResponseBytes
	}
	return DefaultMaxResponseBytes
}

func (c *Client) roundTripper() http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	c.once.Do(c.newTransport)
	return c.transport
}

func (c *Client) newTransport() {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	c.transport = &http.Transport{
		Proxy:                  nil, // passwords go to the auth service, not to $HTTP_PROXY
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           maxIdleConns,
		MaxIdleConnsPerHost:    maxIdleConns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: int64(c.maxResponseBytes()),
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redactor removes passwords from the error texts that this package does
// not write itself: a transport's, and values quoted from an answer.
type redactor struct{ secrets []string }

// with returns r also removing secret, as given and as escaped.
func (r redactor) with(secret string) redactor {
	if secret == "" {
		return r
	}
	out := redactor{secrets: append(slices.Clip(r.secrets), secret)}
	if e := escape(secret); e != secret {
		out.secrets = append(out.secrets, e)
	}
	return out
}

func (r redactor) scrub(s string) string {
	for _, p := range r.secrets {
		s = strings.ReplaceAll(s, p, "[redacted]")
	}
	return s
}

// fail returns an error of kind (one of the Err values) with detail.
func (r redactor) fail(kind error, detail string) error {
	return &authError{msg: kind.Error() + ": " + r.scrub(detail), errs: []error{kind}}
}

// cause returns an error that reads "authhttp: what: err" without the
// passwords, and matches err (errors.Is, errors.As) unless err's own text
// held one: then only the context's error it may wrap is kept, so that no
// unwrapped error tells the password either.
func (r redactor) cause(what string, err error) error {
	text := err.Error()
	clean := r.scrub(text)
	e := &authError{msg: "authhttp: " + what + ": " + clean}
	switch {
	case clean == text:
		e.errs = []error{err}
	case errors.Is(err, context.DeadlineExceeded):
		e.errs = []error{context.DeadlineExceeded}
	case errors.Is(err, context.Canceled):
		e.errs = []error{context.Canceled}
	}
	return e
}

// transportError wraps an error of the HTTP exchange. A malformed header
// line is quoted whole by net/textproto, and could hold the Auth-Pass of
// the answer: such an error keeps only its kind.
func (r redactor) transportError(err error) error {
	var pe textproto.ProtocolError
	if errors.As(err, &pe) {
		return r.fail(ErrResponse, "malformed HTTP header")
	}
	return r.cause("auth service", err)
}

// authError is an error whose text was scrubbed of the password.
type authError struct {
	msg  string
	errs []error
}

func (e *authError) Error() string   { return e.msg }
func (e *authError) Unwrap() []error { return e.errs }
