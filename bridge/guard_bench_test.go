package bridge

import (
	"context"
	"io"
	"strconv"
	"testing"
)

// benchFetch streams b.N IMAP FETCH responses, each a literal of size
// bytes, from the backend through Join to the client.
func benchFetch(b *testing.B, useTLS bool, g Guard, size int) {
	l := startJoin(b, context.Background(), useTLS, Options{Guard: g})
	body := make([]byte, size)
	for i := range body {
		body[i] = "abcdefghijklmnopqrstuvwxyz0123456789 \r\n"[i%39]
	}
	var resp []byte
	for i := range 8 {
		resp = append(resp, "* "+strconv.Itoa(i+1)+" FETCH (UID "+strconv.Itoa(i+100)+" BODY[] {"+strconv.Itoa(size)+"}\r\n"...)
		resp = append(resp, body...)
		resp = append(resp, ")\r\n"...)
	}
	resp = append(resp, "f OK FETCH completed\r\n"...)
	done := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, l.client); done <- n }()
	b.SetBytes(int64(len(resp)))
	b.ResetTimer()
	for range b.N {
		if _, err := l.backend.Write(resp); err != nil {
			b.Fatal(err)
		}
	}
	closeWriteConn(b, l.backend)
	if n := <-done; n != int64(b.N)*int64(len(resp)) {
		b.Fatalf("read %d bytes; want %d", n, int64(b.N)*int64(len(resp)))
	}
	b.StopTimer()
}

// BenchmarkIMAPFetch compares bulk FETCH data through Join without a guard
// (splice(2) on plain TCP) and with GuardIMAP, on TCP and TLS legs, for
// large and small messages.
func BenchmarkIMAPFetch(b *testing.B) {
	for _, tc := range []struct {
		name   string
		useTLS bool
		size   int
	}{
		{"TCP/64KiB", false, 64 << 10},
		{"TCP/2KiB", false, 2 << 10},
		{"TLS/64KiB", true, 64 << 10},
		{"TLS/2KiB", true, 2 << 10},
	} {
		for _, g := range []Guard{GuardNone, GuardIMAP} {
			b.Run(tc.name+"/guard="+g.String(), func(b *testing.B) { benchFetch(b, tc.useTLS, g, tc.size) })
		}
	}
}
