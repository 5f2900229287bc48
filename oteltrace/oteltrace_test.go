package oteltrace_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/oteltrace"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// A real session through a Proxy becomes a "mail session" span with one
// child per stage, timed as the events say, with the TLS facts and the
// member; a refused session's admitted span carries its error.
func TestSpans(t *testing.T) {
	leaktest.Check(t)
	ca, err := mailtest.GenerateCA("oteltrace test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	var certs sni.Resolver
	require.NoError(t, certs.AddDefault(&leaf.TLS))
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	defer sys.Close()

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	spans := oteltrace.New(tp.Tracer("mailedge-test"))
	ended := make(chan struct{}, 4)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: addrs.IMAP, Protocol: starttls.IMAP},
		Limiter:  &ratelimit.Limiter{Limits: ratelimit.Limits{InFlight: 1}},
		OnEvent: func(e mailedge.Event) {
			spans.Event(e)
			if e.Stage == mailedge.StageEnded {
				ended <- struct{}{}
			}
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()
	defer func() { cancel(); <-done }()

	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com", NextProtos: []string{"imap"}})
	require.NoError(t, err)
	buf := make([]byte, 64)
	_, err = c.Read(buf) // the backend's greeting
	require.NoError(t, err)
	// Over the in-flight limit: refused.
	c2, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(c2)
	c2.Close()
	<-ended
	c.Close()
	<-ended
	assert.Zero(t, spans.Open())

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = append(byName[s.Name], s)
	}
	require.Len(t, byName["mail session"], 2)
	require.Len(t, byName["admitted"], 2)
	require.Len(t, byName["client"], 1)
	require.Len(t, byName["backend"], 1)
	require.Len(t, byName["handover"], 1)

	client := byName["client"][0]
	var session tracetest.SpanStub
	for _, s := range byName["mail session"] {
		if s.SpanContext.SpanID() == client.Parent.SpanID() {
			session = s
		}
	}
	require.True(t, session.SpanContext.IsValid(), "the client span's parent is a session span")
	assert.Equal(t, session.SpanContext.TraceID(), client.SpanContext.TraceID())
	attrs := map[string]string{}
	for _, kv := range client.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	assert.Equal(t, "1.3", attrs["tls.protocol.version"])
	assert.Equal(t, "mail.example.com", attrs["tls.server_name"])
	assert.Equal(t, "imap", attrs["tls.next_protocol"])
	assert.False(t, client.StartTime.Before(session.StartTime))
	assert.False(t, client.EndTime.After(session.EndTime))
	assert.Equal(t, addrs.IMAP, byName["backend"][0].Attributes[0].Value.String())

	var refused int
	for _, s := range byName["admitted"] {
		if s.Status.Code == codes.Error {
			refused++
			assert.Len(t, s.Events, 1, "the error is recorded")
		}
	}
	assert.Equal(t, 1, refused)
	outcomes := map[string]bool{}
	for _, s := range byName["mail session"] {
		for _, kv := range s.Attributes {
			if kv.Key == "mailedge.outcome" {
				outcomes[kv.Value.String()] = true
			}
		}
	}
	assert.Equal(t, map[string]bool{"ok": true, "rate_limited": true}, outcomes)
}
