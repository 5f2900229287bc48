//go:build !linux

package main

import "net"

// listenConfig is net's default elsewhere: keepalive set on each accepted
// connection.
func listenConfig() *net.ListenConfig { return &net.ListenConfig{} }
