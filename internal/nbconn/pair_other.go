//go:build !unix

package nbconn

import (
	"errors"
	"net"
)

// socketPair is not available where Conn cannot read without blocking:
// TLSSafe reports false there.
func socketPair() (net.Conn, net.Conn, error) {
	return nil, nil, errors.ErrUnsupported
}
