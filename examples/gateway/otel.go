package main

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/oteltrace"
)

// tracing is -otel-endpoint: the sessions' stages as OpenTelemetry spans,
// batched to an OTLP/HTTP collector.
type tracing struct {
	provider *sdktrace.TracerProvider
	spans    *oteltrace.Spans
}

// buildTracing sets up -otel-endpoint; nothing without it.
func (g *gateway) buildTracing() error {
	o := g.opts
	if o.otelEndpoint == "" {
		return nil
	}
	u, err := url.Parse(o.otelEndpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-otel-endpoint %q: want an http:// or https:// URL of an OTLP/HTTP collector", o.otelEndpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(o.otelEndpoint)}
	if u.Path == "" || u.Path == "/" {
		opts = []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithURLPath("/v1/traces")}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
	}
	// New does not connect: a collector that is down costs dropped
	// batches, logged by the SDK, never a session.
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return fmt.Errorf("-otel-endpoint: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", o.otelService),
		attribute.String("service.instance.id", replicaName(o)))
	g.tracing = &tracing{provider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}
	g.tracing.spans = oteltrace.New(g.tracing.provider.Tracer("github.com/mailedge/mailedge/examples/gateway"))
	g.log.Info("session traces exported", "endpoint", u.Redacted(), "service", o.otelService)
	return nil
}

// traceService adds the spans to a listener's events, after its metrics.
func (g *gateway) traceService(p *mailedge.Proxy) {
	if g.tracing == nil {
		return
	}
	prev := p.OnEvent
	p.OnEvent = func(e mailedge.Event) {
		if prev != nil {
			prev(e)
		}
		g.tracing.spans.Event(e)
	}
}

// closeTracing sends the spans still batched, within five seconds.
func (g *gateway) closeTracing() {
	if g.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.tracing.provider.Shutdown(ctx); err != nil {
		g.log.Warn("otel: flushing the last spans", "err", err)
	}
}
