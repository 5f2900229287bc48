package mailwire

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsHTTPRequest(t *testing.T) {
	for _, line := range []string{
		"GET / HTTP/1.1\r\n", "POST /mail HTTP/1.1\r\n", "HEAD / HTTP/1.0", "PUT /x HTTP/1.1\n",
		"CONNECT mail.example.com:443 HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n", "PRI * HTTP/2.0\r\n",
		"DELETE /a?b=c HTTP/1.1\r\n", "TRACE / HTTP/1.1\r\n", "PATCH /p HTTP/1.1\r\n",
		// The ALPACA paper's cross-protocol requests from a browser.
		"POST / HTTP/1.1\r\n", "PUT /upload.php HTTP/1.1\r\n",
	} {
		assert.True(t, IsHTTPRequest([]byte(line)), "%q", line)
	}
	for _, line := range []string{
		"", "GET", "GET /", "GET / HTTP/1", "GET / HTTP/1.1 extra", "get / HTTP/1.1", "GET  / HTTP/1.1",
		"GETX / HTTP/1.1", "EHLO client.example", "MAIL FROM:<a@example.com>", "A1 LOGIN user pass",
		"a SELECT HTTP/1.1", "USER alice", "GET / HTTP/A.1", "GET / http/1.1",
		"Host: mail.example.com", "POST / HTTP/1.1x",
	} {
		assert.False(t, IsHTTPRequest([]byte(line)), "%q", line)
	}
}

func TestIsTLSRecord(t *testing.T) {
	assert.True(t, IsTLSRecord([]byte{0x16, 0x03, 0x01, 0x02, 0x00}))
	assert.True(t, IsTLSRecord([]byte{0x16, 0x03, 0x03}))
	assert.False(t, IsTLSRecord([]byte{0x16, 0x03}))
	assert.False(t, IsTLSRecord([]byte{0x16, 0x03, 0x05}))
	assert.False(t, IsTLSRecord([]byte{0x17, 0x03, 0x03}))
	assert.False(t, IsTLSRecord([]byte("EHLO x\r\n")))
}

func FuzzIsHTTPRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("A1 LOGIN a b\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if IsHTTPRequest(b) {
			// A request line has exactly two spaces and ends in a version.
			l := TrimEOL(b)
			if n := len(l); n < 14 || string(l[n-8:n-3]) != "HTTP/" {
				t.Fatalf("%q taken for an HTTP request", b)
			}
		}
		_ = IsTLSRecord(b)
	})
}
