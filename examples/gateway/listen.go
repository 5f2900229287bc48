package main

import (
	"context"
	"net"
)

// listen opens a TCP listener whose accepted connections have the same TCP
// keepalive as net.Listen gives them (on after 15 s idle, probes every 15 s,
// 9 probes), set once on the listening socket where the platform's accepted
// sockets inherit it (see listen_linux.go) instead of with four setsockopt
// calls on every accepted connection.
func listen(network, addr string) (net.Listener, error) {
	return listenConfig().Listen(context.Background(), network, addr)
}
