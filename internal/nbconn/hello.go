package nbconn

import (
	"encoding/binary"
	"net"
)

// TLS record layout, for re-framing a client's first record (RFC 8446
// section 5.1; the same in TLS 1.2).
const (
	recordHeaderLen     = 5     // type, legacy version, length
	recordTypeHandshake = 22    // handshake
	maxPlaintext        = 16384 // 2^14, the largest plaintext record

	// maxWholeHello is the longest first record served as it came: with
	// its header it fits the 576 bytes crypto/tls reads a record into
	// first (5 + bytes.MinRead, rounded up to Go's size class).
	maxWholeHello = 566
	// helloFragment is the payload of each record a longer one is served
	// as. crypto/tls gathers a handshake message in a buffer that grows to
	// at least twice its size at each step; in fragments of 384 bytes it
	// steps through 384, 768 and 1536, all size classes, and so ends where
	// a whole ClientHello of up to 1536 bytes leaves it.
	helloFragment = 384
)

// WrapServer is Wrap for the server side of a TLS handshake. When the
// client's first record is a handshake record (its ClientHello) too long
// to fit the buffer crypto/tls reads a record into first, Read serves it as
// several handshake records of helloFragment bytes, one per Read; every
// other byte is served as it came.
//
// crypto/tls keeps the buffer it reads records into at the size of the
// longest record it ever read, for the life of the connection. A
// post-quantum ClientHello (X25519MLKEM768, about 1.4 KB) in one record
// grows it from 576 bytes to 2 KiB on every session, idle ones too, while
// the same ClientHello in fragments leaves it at 576. TLS allows a
// handshake message in several records (RFC 8446 section 5.1), the
// transcript covers messages rather than records, and only the first
// record is re-framed: a plaintext one, as a ClientHello always is.
func WrapServer(c net.Conn) net.Conn {
	w := Wrap(c)
	if nc, ok := w.(*Conn); ok {
		nc.split = true
	}
	return w
}

// readFirst is the first Read of a Conn of WrapServer: a read as any
// other, and when its bytes begin a handshake record longer than
// maxWholeHello, the rest of that record, read in the same (blocking) way
// and put before the prefix re-framed in fragments. A failed read of the
// rest loses nothing: the bytes it got are served as they came, and the
// error comes again with the next read of the socket.
func (c *Conn) readFirst(p []byte) (int, error) {
	c.split = false
	if c.nonblock.Load() || c.onFD {
		return c.Read(p)
	}
	n, err := c.Read(p)
	for err == nil && n < recordHeaderLen && len(p) >= recordHeaderLen && p[0] == recordTypeHandshake {
		var k int
		k, err = c.Read(p[n:recordHeaderLen]) // the rest of the header, as crypto/tls waits for it
		n += k
	}
	if n < recordHeaderLen || p[0] != recordTypeHandshake {
		if n > 0 {
			err = nil // served as they came; an error comes again with the next read
		}
		return n, err
	}
	size := int(binary.BigEndian.Uint16(p[3:5]))
	if size <= maxWholeHello || size > maxPlaintext {
		return n, nil // short enough, or crypto/tls's error to give
	}
	rec := make([]byte, recordHeaderLen+size, recordHeaderLen+size+n)
	got := copy(rec, p[:n])
	extra := p[got:n] // bytes after the record, if the client sent any
	for got < len(rec) {
		k, err := c.Read(rec[got:])
		got += k
		if err != nil {
			c.unread(rec[n:got])
			return n, nil
		}
	}
	out := make([]byte, 0, len(rec)+(size/helloFragment+1)*recordHeaderLen+len(extra)+len(c.pre))
	for body := rec[recordHeaderLen:]; len(body) > 0; {
		k := min(len(body), helloFragment)
		out = append(out, recordTypeHandshake, rec[1], rec[2], byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	c.fragLeft = int32(len(out))
	out = append(out, extra...)
	c.pre = append(out, c.pre...)
	return c.readPrefix(p), nil
}

// unread puts b before the prefix, to be read next.
func (c *Conn) unread(b []byte) {
	if len(b) == 0 {
		return
	}
	c.pre = append(b[:len(b):len(b)], c.pre...)
	c.preLen.Store(int64(len(c.pre)))
}
