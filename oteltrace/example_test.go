package oteltrace_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/oteltrace"
)

// Example records the events of two sessions, as a Proxy's OnEvent would
// report them, and prints the spans: a session span per session, a child
// per stage, the refused admission marked as an error.
func Example() {
	exp := tracetest.NewInMemoryExporter() // an OTLP exporter in production
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	spans := oteltrace.New(tp.Tracer("mailedge"))
	// proxy.OnEvent = spans.Event

	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	step := func(id uint64, st mailedge.Stage, d time.Duration, err error) {
		at = at.Add(d)
		e := mailedge.Event{ID: id, Stage: st, Time: at, Duration: d, Client: client, Err: err}
		if st == mailedge.StageEnded {
			e.Info = &mailedge.SessionInfo{Outcome: mailedge.OutcomeOK}
		}
		spans.Event(e)
	}
	step(1, mailedge.StageAccepted, 0, nil)
	step(1, mailedge.StageClient, 3*time.Millisecond, nil)
	step(1, mailedge.StageBackend, time.Millisecond, nil)
	step(1, mailedge.StageHandover, 0, nil)
	step(2, mailedge.StageAccepted, 0, nil)
	step(2, mailedge.StageAdmitted, 0, errors.New("too many connections"))
	step(2, mailedge.StageEnded, 0, nil)
	step(1, mailedge.StageEnded, time.Second, nil)

	for _, s := range exp.GetSpans() {
		fmt.Printf("%-12s %-8v %v\n", s.Name, s.EndTime.Sub(s.StartTime), s.Status.Code)
	}
	// Output:
	// client       3ms      Unset
	// backend      1ms      Unset
	// handover     0s       Unset
	// admitted     0s       Error
	// mail session 0s       Unset
	// mail session 1.004s   Unset
}
