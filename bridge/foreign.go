package bridge

import (
	"bytes"
	"fmt"
	"net"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// ErrForeignProtocol is wrapped by the error of a session that
// Options.RefuseForeign ended. It is the same value as
// starttls.ErrForeignProtocol.
var ErrForeignProtocol = mailwire.ErrForeignProtocol

// maxFirstLine bounds the first line RefuseForeign holds to check it: an
// HTTP request line with its target fits (browsers cut URLs of forms and
// fetches far shorter for a cross-protocol attack to be practical), and a
// mail command line is shorter.
const maxFirstLine = 1024

// firstLine is RefuseForeign's filter on the client's direction: it holds
// the client's bytes until its first line is complete, refuses a TLS
// record or an HTTP request line, and then hands everything on to next
// (the guard or inspector, or the server when nil). forward drops it from
// the direction once it is done.
type firstLine struct {
	next filter
	dst  net.Conn
	buf  []byte
	done bool
}

func (f *firstLine) write(p []byte) error {
	if f.done {
		return f.pass(p)
	}
	f.buf = append(f.buf, p...)
	if len(f.buf) >= 3 && mailwire.IsTLSRecord(f.buf) {
		return fmt.Errorf("bridge: %w: a TLS record after TLS", ErrForeignProtocol)
	}
	i := bytes.IndexByte(f.buf, '\n')
	if i < 0 && len(f.buf) < maxFirstLine {
		return nil // the line is not complete yet
	}
	if i >= 0 && mailwire.IsHTTPRequest(f.buf[:i+1]) {
		return fmt.Errorf("bridge: %w: an HTTP request", ErrForeignProtocol)
	}
	f.done = true
	b := f.buf
	f.buf = nil
	return f.pass(b)
}

func (f *firstLine) pass(p []byte) error {
	if f.next != nil {
		return f.next.write(p)
	}
	_, err := f.dst.Write(p)
	return err
}

func (f *firstLine) closed() {
	if f.next != nil {
		f.next.closed()
	}
}
