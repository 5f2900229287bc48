// Package oteltrace turns the stages of a mailedge.Proxy's sessions
// (Proxy.OnEvent) into OpenTelemetry spans: one span per session, from
// its accept to its end, with one child span per stage (admitted, client,
// backend, login, handover) carrying the stage's facts, so that a trace
// backend shows where each session spent its time. The root package keeps
// no OpenTelemetry dependency; this one imports only the API
// (go.opentelemetry.io/otel/trace) and leaves the SDK and the exporter to
// the application.
//
// Typical usage:
//
//	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter))
//	defer tp.Shutdown(ctx)
//	spans := oteltrace.New(tp.Tracer("mailedge"))
//	proxy.OnEvent = spans.Event
//
// Spans are started and ended with the times the events report, after the
// fact, so a slow exporter never delays a session; Event only records into
// the Tracer's span processor. A Spans is safe for concurrent use by the
// sessions of any number of Proxies.
//
// The attributes follow OpenTelemetry's semantic conventions where they
// exist (client.address, client.port, tls.protocol.version, tls.cipher,
// tls.server_name, tls.resumed, tls.next_protocol, server.address for the
// member, enduser.id for the user); mail-specific ones are prefixed
// "mailedge." (mailedge.outcome, mailedge.bytes_in, mailedge.bytes_out,
// mailedge.passthrough, mailedge.identity: how the client reached the
// backend). Passwords are never in an Event.
package oteltrace
