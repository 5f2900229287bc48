package bridge

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSplicePolicy: between two plain TCP sockets, a session of short
// exchanges (a TLS handshake, a few mail commands) is copied through the
// pooled buffers and never splices; a download that fills a buffer
// splices from then on, and every byte arrives in order either way.
func TestSplicePolicy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		flights     int // round trips of flight bytes each way
		flight      int
		download    int // then this many bytes from the server
		wantSpliced bool
	}{
		{name: "short exchanges", flights: 20, flight: 300},
		{name: "download", flights: 2, flight: 300, download: 8 << 20, wantSpliced: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, proxyC := tcpPair(t)
			proxyS, server := tcpPair(t)
			t.Cleanup(func() { client.Close(); server.Close() })
			ended := make(chan *session, 1)
			opt := Options{Poller: new(Poller)}
			t.Cleanup(func() { opt.Poller.Close() })
			var s *session
			opt.Hooks.End = func(Stats, error) { ended <- s }
			s = newSession(context.Background(), proxyC, proxyS, &opt)
			go s.run(&s.dirs[0])
			go s.run(&s.dirs[1])

			msg := bytes.Repeat([]byte{'x'}, tc.flight)
			got := make([]byte, tc.flight)
			for range tc.flights {
				_, err := client.Write(msg)
				require.NoError(t, err)
				_, err = io.ReadFull(server, got)
				require.NoError(t, err)
				_, err = server.Write(msg)
				require.NoError(t, err)
				_, err = io.ReadFull(client, got)
				require.NoError(t, err)
			}
			want := make([]byte, tc.download)
			for i := range want {
				want[i] = byte(i * 7)
			}
			errc := make(chan error, 1)
			go func() { _, err := server.Write(want); server.CloseWrite(); errc <- err }()
			down, err := io.ReadAll(client)
			require.NoError(t, err)
			require.NoError(t, <-errc)
			assert.True(t, bytes.Equal(want, down), "the download arrived whole and in order")
			require.NoError(t, client.CloseWrite())

			s = <-ended
			assert.Zero(t, s.dirs[0].spliced, "client->server: short flights are not spliced")
			if tc.wantSpliced {
				assert.Greater(t, s.dirs[1].spliced, int64(tc.download/2), "server->client: the download is spliced")
			} else {
				assert.Zero(t, s.dirs[1].spliced, "server->client: short flights are not spliced")
			}
		})
	}
}
