package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/testnet"
)

// benchListener serves every accepted loopback connection with serve in its
// own goroutine until the benchmark ends.
func benchListener(b *testing.B, serve func(net.Conn)) string {
	b.Helper()
	return testnet.Serve(b, serve)
}

// benchClient dials addr, plays the plaintext part of tc (nil for implicit
// TLS), and completes a full TLS handshake.
func benchClient(b *testing.B, addr string, cfg *tls.Config, tc *startTLSCase) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if tc != nil {
		br := bufio.NewReader(conn)
		readUntil(b, br, tc.greeting)
		if _, err := io.WriteString(conn, tc.pre+tc.start); err != nil {
			b.Fatal(err)
		}
		for _, end := range tc.preEnds {
			readUntil(b, br, end)
		}
		readUntil(b, br, tc.goAhead)
	}
	tc2 := tls.Client(conn, cfg)
	if err := tc2.Handshake(); err != nil {
		b.Fatal(err)
	}
	// Wait for the server to finish and close, so iterations do not overlap.
	_, _ = io.Copy(io.Discard, tc2)
}

func readUntil(b *testing.B, br *bufio.Reader, prefix string) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(line, prefix) {
			return
		}
	}
}

// BenchmarkHandshakeBaseline is a plain tls.Server handshake on loopback,
// the yardstick for BenchmarkServeStartTLS.
func BenchmarkHandshakeBaseline(b *testing.B) {
	pki := newSrvPKI(b)
	addr := benchListener(b, func(conn net.Conn) {
		_ = tls.Server(conn, pki.server).Handshake()
	})
	b.ReportAllocs()
	for b.Loop() {
		benchClient(b, addr, pki.client, nil)
	}
}

// BenchmarkServeStartTLS is the full pre-TLS dialogue of each protocol plus
// the handshake, client and server side, on loopback.
func BenchmarkServeStartTLS(b *testing.B) {
	pki := newSrvPKI(b)
	for _, tc := range startTLSCases {
		if tc.name == "smtp before ehlo" {
			continue
		}
		b.Run(tc.name, func(b *testing.B) {
			s := &Server{Protocol: tc.proto, TLSConfig: pki.server}
			addr := benchListener(b, func(conn net.Conn) {
				if _, err := s.Serve(context.Background(), conn); err != nil {
					b.Error(err)
				}
			})
			b.ReportAllocs()
			for b.Loop() {
				benchClient(b, addr, pki.client, &tc)
			}
		})
	}
}

// BenchmarkServeTLSImplicit is ServeTLS, to compare with the baseline.
func BenchmarkServeTLSImplicit(b *testing.B) {
	pki := newSrvPKI(b)
	s := &Server{Protocol: IMAP, TLSConfig: pki.server}
	addr := benchListener(b, func(conn net.Conn) {
		if _, err := s.ServeTLS(context.Background(), conn); err != nil {
			b.Error(err)
		}
	})
	b.ReportAllocs()
	for b.Loop() {
		benchClient(b, addr, pki.client, nil)
	}
}
