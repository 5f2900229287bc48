package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collectorStub is an OTLP/HTTP collector that keeps the span names and
// the service names it receives.
type collectorStub struct {
	mu       sync.Mutex
	spans    map[string]int
	services map[string]bool
}

func (c *collectorStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf on /v1/traces", http.StatusNotFound)
		return
	}
	b, err := io.ReadAll(r.Body)
	var req collector.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				c.services[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans[s.Name]++
			}
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
	w.Write(out)
}

// With -otel-endpoint, a login session through the demo reaches an OTLP
// collector as a "mail session" span with its stages, flushed at shutdown.
func TestOTelSpans(t *testing.T) {
	stub := &collectorStub{spans: map[string]int{}, services: map[string]bool{}}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	d := startDemoGateway(t, io.Discard, true, "-otel-endpoint", srv.URL, "-otel-service", "mx-edge")
	c, err := imapclient.DialTLS(d.addrs["imaps"], &imapclient.Options{TLSConfig: clientTLS(d.roots, "mail.example.com")})
	require.NoError(t, err)
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	require.NoError(t, c.Logout().Wait())
	c.Close()
	d.g.shutdown(5e9) // the session ends, the batch is flushed
	stub.mu.Lock()
	defer stub.mu.Unlock()
	for _, name := range []string{"mail session", "client", "backend", "login"} {
		assert.Positive(t, stub.spans[name], "span %q in %v", name, stub.spans)
	}
	assert.True(t, stub.services["mx-edge"], "%v", stub.services)
}

func TestOTelFlags(t *testing.T) {
	for _, bad := range []string{"collector:4318", "ftp://x", "http://"} {
		o, err := parseFlags([]string{"-cert", testCertFlag(t, t.TempDir()), "-backend", "p=127.0.0.1:1,probe=none",
			"-listen", "i=127.0.0.1:0,proto=imap,tls=implicit,pool=p", "-otel-endpoint", bad}, io.Discard)
		require.NoError(t, err)
		_, err = build(o, discardLog())
		assert.ErrorContains(t, err, "-otel-endpoint", bad)
	}
}
