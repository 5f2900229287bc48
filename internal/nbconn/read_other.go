//go:build !unix

package nbconn

// readNow blocks where sockets cannot be read without waiting; the bridge
// never switches a Conn to non-blocking on these platforms.
func (c *Conn) readNow(p []byte) (n int, errno, err error) {
	n, err = c.Conn.Read(p)
	return n, nil, err
}
