package oteltrace

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailedge/mailedge"
)

// Spans records sessions as spans through a Tracer. Create it with New.
type Spans struct {
	tracer trace.Tracer

	mu   sync.Mutex
	open map[uint64]trace.Span // sessions between their accepted and ended events
}

// New returns a Spans that records through tracer.
func New(tracer trace.Tracer) *Spans {
	return &Spans{tracer: tracer, open: make(map[uint64]trace.Span)}
}

// Event records e: use it as mailedge.Proxy.OnEvent. StageAccepted starts
// the session's span, each later stage adds a child span, StageEnded ends
// the session's span.
func (s *Spans) Event(e mailedge.Event) {
	start := e.Time.Add(-e.Duration)
	if e.Stage == mailedge.StageAccepted {
		_, span := s.tracer.Start(context.Background(), "mail session", trace.WithTimestamp(start),
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(clientAttrs(e.Client)...))
		s.mu.Lock()
		s.open[e.ID] = span
		s.mu.Unlock()
	}
	s.mu.Lock()
	session := s.open[e.ID]
	if e.Stage == mailedge.StageEnded {
		delete(s.open, e.ID)
	}
	s.mu.Unlock()
	if session == nil {
		return // a session whose accept this Spans did not see
	}
	switch {
	case e.Stage == mailedge.StageEnded:
		endSession(session, e)
		return
	case e.Stage == mailedge.StageAccepted && e.Err == nil:
		return // the session span covers it
	}
	ctx := trace.ContextWithSpan(context.Background(), session)
	_, span := s.tracer.Start(ctx, e.Stage.String(), trace.WithTimestamp(start), trace.WithAttributes(stageAttrs(e)...))
	if e.Err != nil {
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, e.Err.Error())
	}
	span.End(trace.WithTimestamp(e.Time))
}

// Open returns the number of sessions whose span is open: begun, not yet
// ended.
func (s *Spans) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

func endSession(span trace.Span, e mailedge.Event) {
	if in := e.Info; in != nil {
		span.SetAttributes(
			attribute.String("mailedge.outcome", string(in.Outcome)),
			attribute.Int64("mailedge.bytes_in", in.Stats.ClientToServer),
			attribute.Int64("mailedge.bytes_out", in.Stats.ServerToClient),
		)
		if in.Member != "" {
			span.SetAttributes(attribute.String("server.address", in.Member))
		}
		if in.User != "" {
			span.SetAttributes(attribute.String("enduser.id", in.User))
		}
		if in.Passthrough {
			span.SetAttributes(attribute.Bool("mailedge.passthrough", true), attribute.String("tls.server_name", in.ServerName))
		}
	}
	if e.Err != nil {
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, e.Err.Error())
	}
	span.End(trace.WithTimestamp(e.Time))
}

// stageAttrs are a stage span's attributes.
func stageAttrs(e mailedge.Event) []attribute.KeyValue {
	var kv []attribute.KeyValue
	if e.TLS != nil {
		kv = append(kv, tlsAttrs(e.TLS)...)
	}
	if e.Member != "" {
		kv = append(kv, attribute.String("server.address", e.Member))
	}
	if len(e.Identity) > 0 {
		kv = append(kv, attribute.StringSlice("mailedge.identity", e.Identity))
	}
	if e.User != "" {
		kv = append(kv, attribute.String("enduser.id", e.User))
	}
	return kv
}

func tlsAttrs(cs *tls.ConnectionState) []attribute.KeyValue {
	kv := []attribute.KeyValue{
		attribute.String("tls.protocol.name", "tls"),
		attribute.String("tls.protocol.version", strings.TrimPrefix(tls.VersionName(cs.Version), "TLS ")),
		attribute.String("tls.cipher", tls.CipherSuiteName(cs.CipherSuite)),
		attribute.Bool("tls.resumed", cs.DidResume),
	}
	if cs.ServerName != "" {
		kv = append(kv, attribute.String("tls.server_name", cs.ServerName))
	}
	if cs.NegotiatedProtocol != "" {
		kv = append(kv, attribute.String("tls.next_protocol", cs.NegotiatedProtocol))
	}
	if len(cs.PeerCertificates) > 0 {
		kv = append(kv, attribute.String("tls.client.subject", cs.PeerCertificates[0].Subject.String()),
			attribute.Bool("mailedge.client_cert_verified", len(cs.VerifiedChains) > 0))
	}
	return kv
}

func clientAttrs(a net.Addr) []attribute.KeyValue {
	if a == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return []attribute.KeyValue{attribute.String("client.address", a.String())}
	}
	kv := []attribute.KeyValue{attribute.String("client.address", host)}
	if p, err := strconv.Atoi(port); err == nil {
		kv = append(kv, attribute.Int("client.port", p))
	}
	return kv
}
