package main

import (
	"crypto/tls"
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/ratelimit/redisstore"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/ticketkeys"
	"github.com/mailedge/mailedge/starttls"
)

// metrics are the gateway's Prometheus series. The library packages report
// through return values and hooks; only this program imports client_golang.
// A nil *metrics records nothing.
type metrics struct {
	reg          *prometheus.Registry
	certs        *sni.Store
	sessions     *prometheus.CounterVec
	handshakes   *prometheus.CounterVec
	tlsFails     *prometheus.CounterVec
	starttls     *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	stages       *prometheus.HistogramVec
	unfiltered   *prometheus.CounterVec
	dials        *prometheus.HistogramVec
	limitedTotal *prometheus.CounterVec
	authTotal    *prometheus.CounterVec
	backendUp    *prometheus.GaugeVec
	probeLat     *prometheus.GaugeVec
	certExpiry   *prometheus.GaugeVec
}

func newMetrics(certs *sni.Store) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), certs: certs}
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_sessions_total",
		Help: "Client sessions by listener and outcome."}, []string{"listener", "outcome"})
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_tls_handshakes_total",
		Help: "Completed client TLS handshakes by listener, version, cipher and whether SNI matched a certificate."},
		[]string{"listener", "version", "cipher", "sni_match"})
	m.tlsFails = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_client_failures_total",
		Help: "Client dialogues or handshakes that failed, by reason."}, []string{"listener", "reason"})
	m.starttls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_starttls_total",
		Help: "STARTTLS listener sessions: upgraded or plain (declined in Allow mode)."}, []string{"listener", "result"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_bytes_total",
		Help: "Bytes copied, by direction."}, []string{"listener", "direction"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailedge_session_seconds",
		Help: "Session duration.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"listener"})
	// From 100 µs to about 27 s: a Limiter's Redis round trip, a handshake,
	// a backend dial and a slow login all fall inside.
	stageBuckets := prometheus.ExponentialBuckets(0.0001, 2.5, 14)
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailedge_stage_seconds",
		Help:    "Time sessions spend in each stage (accepted: the PROXY header; admitted: the limiter; client: TLS or the STARTTLS dialogue; backend: a dial; login: the login at the edge; handover), by result (ok or error).",
		Buckets: stageBuckets}, []string{"listener", "stage", "result"})
	m.dials = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailedge_backend_dial_seconds",
		Help:    "Backend dials (connect, PROXY/XCLIENT/ID, TLS, greeting) by member and result (ok or error).",
		Buckets: stageBuckets}, []string{"listener", "member", "result"})
	m.unfiltered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_guard_unfiltered_total",
		Help: "POP3 sessions whose STARTTLS guard met a response it did not expect and stopped filtering the server's capability answers (client STLS stayed refused)."},
		[]string{"listener"})
	m.limitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_ratelimit_refusals_total",
		Help: "Refusals by the rate limiter, by kind."}, []string{"listener", "kind"})
	m.authTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailedge_auth_decisions_total",
		Help: "Answers of the authenticator (-auth-file, -auth-http) on listeners with auth: ok, refused, temporary (a temporary refusal) or error (no answer)."},
		[]string{"listener", "result"})
	m.backendUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailedge_backend_up",
		Help: "1 when the health checker holds the backend member up."}, []string{"pool", "member"})
	m.probeLat = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailedge_backend_probe_seconds",
		Help: "Latency of the last health probe."}, []string{"pool", "member"})
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailedge_certificate_expiry_timestamp_seconds",
		Help: "NotAfter of the certificate served for each name, as a Unix time."}, []string{"name", "key", "issuer"})
	m.reg.MustRegister(m.sessions, m.handshakes, m.tlsFails, m.starttls, m.bytes, m.duration, m.stages, m.dials, m.unfiltered, m.limitedTotal, m.authTotal,
		m.backendUp, m.probeLat, m.certExpiry, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.updateCerts(certs)
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// updateCerts refreshes the expiry gauges after a (re)load.
func (m *metrics) updateCerts(certs *sni.Store) {
	if m == nil || certs == nil {
		return
	}
	m.certExpiry.Reset()
	for _, in := range certs.Certificates() {
		m.certExpiry.WithLabelValues(in.Name, in.KeyType, in.Issuer).Set(float64(in.NotAfter.Unix()))
	}
}

// stage records one stage of a session (mailedge.Proxy.OnEvent); the end of
// a session is in mailedge_session_seconds already.
func (m *metrics) stage(listener string, e mailedge.Event) {
	if m == nil || e.Stage == mailedge.StageEnded {
		return
	}
	result := "ok"
	if e.Err != nil {
		result = "error"
	}
	m.stages.WithLabelValues(listener, e.Stage.String(), result).Observe(e.Duration.Seconds())
	if e.Stage == mailedge.StageBackend && e.Member != "" {
		m.dials.WithLabelValues(listener, e.Member, result).Observe(e.Duration.Seconds())
	}
}

func (m *metrics) handshakeFailed(listener string, err error) {
	if m == nil {
		return
	}
	reason := "other"
	switch {
	case errors.Is(err, starttls.ErrClientQuit):
		reason = "client_quit"
	case errors.Is(err, starttls.ErrForeignProtocol):
		reason = "foreign_protocol" // HTTP or a ClientHello where a mail command was due (ALPACA)
	case errors.Is(err, starttls.ErrInjection):
		reason = "injection"
	case errors.Is(err, starttls.ErrTooManyErrors):
		reason = "too_many_errors"
	case errors.Is(err, starttls.ErrLineTooLong):
		reason = "line_too_long"
	case errors.Is(err, sni.ErrNoCertificate):
		reason = "no_certificate"
	case errors.As(err, new(*tls.CertificateVerificationError)):
		reason = "client_cert_invalid" // verify=on|optional: a server verifies only client certificates
	case strings.Contains(err.Error(), "client didn't provide a certificate"):
		reason = "client_cert_missing" // verify=on (crypto/tls's error has no type)
	case isTimeout(err):
		reason = "timeout"
	case strings.Contains(err.Error(), "application protocol"):
		reason = "alpn" // a ClientHello for another protocol (ALPACA)
	case strings.Contains(err.Error(), "tls: "):
		reason = "tls_handshake"
	}
	m.tlsFails.WithLabelValues(listener, reason).Inc()
}

func (m *metrics) limited(listener string, err error) {
	if m == nil {
		return
	}
	kind := "other"
	var le *ratelimit.LimitError
	if errors.As(err, &le) {
		kind = le.Kind.String()
	}
	m.limitedTotal.WithLabelValues(listener, kind).Inc()
}

func (m *metrics) authDecision(listener, result string) {
	if m == nil {
		return
	}
	m.authTotal.WithLabelValues(listener, result).Inc()
}

func (m *metrics) session(listener string, in mailedge.SessionInfo) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(listener, string(in.Outcome)).Inc()
	if in.Outcome == mailedge.OutcomeAuthFailed {
		// A login refused by the Limiter (lockout, auth rate) ends the
		// session; the Proxy's OnLimited does not see it.
		var le *ratelimit.LimitError
		if errors.As(in.Err, &le) {
			m.limitedTotal.WithLabelValues(listener, le.Kind.String()).Inc()
		}
	}
	switch {
	case in.TLS != nil:
		match := "no_sni"
		if in.TLS.ServerName != "" {
			match = "default"
			if _, ok := m.certs.Lookup(in.TLS.ServerName); ok {
				match = "sni"
			}
		}
		m.handshakes.WithLabelValues(listener, tls.VersionName(in.TLS.Version), tls.CipherSuiteName(in.TLS.CipherSuite), match).Inc()
		if !in.Implicit {
			m.starttls.WithLabelValues(listener, "upgraded").Inc()
		}
	case plainSession(in):
		m.starttls.WithLabelValues(listener, "plain").Inc()
	case in.Outcome == mailedge.OutcomeClientError || in.Outcome == mailedge.OutcomeForeign:
		m.handshakeFailed(listener, in.Err)
	}
	if in.Stats.Unfiltered {
		m.unfiltered.WithLabelValues(listener).Inc()
	}
	m.bytes.WithLabelValues(listener, "client_to_server").Add(float64(in.Stats.ClientToServer))
	m.bytes.WithLabelValues(listener, "server_to_client").Add(float64(in.Stats.ServerToClient))
	m.duration.WithLabelValues(listener).Observe(in.Duration.Seconds())
}

func (m *metrics) health(pool, member string, st monitor.Status) {
	if m == nil {
		return
	}
	up := 0.0
	if st.Up {
		up = 1
	}
	m.backendUp.WithLabelValues(pool, member).Set(up)
	m.probeLat.WithLabelValues(pool, member).Set(st.Last.Latency.Seconds())
}

// addRedis exports the Stats of the -redis Store, read at each scrape.
func (m *metrics) addRedis(st *redisstore.Store) {
	if m == nil || st == nil {
		return
	}
	counter := func(name, help string, f func(redisstore.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(st.Stats())) })
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailedge_redis_up",
			Help: "1 while Redis answers the rate limiter, 0 from a failed round trip to the next success."},
			func() float64 {
				if st.Stats().Up {
					return 1
				}
				return 0
			}),
		counter("mailedge_redis_errors_total", "Round trips to Redis that failed (timeouts included).",
			func(s redisstore.Stats) uint64 { return s.Errors }),
		counter("mailedge_redis_timeouts_total", "Round trips to Redis that ran out of -redis-timeout.",
			func(s redisstore.Stats) uint64 { return s.Timeouts }),
		counter("mailedge_redis_fallbacks_total", "Limiter events counted on this replica only while Redis was down (fail open).",
			func(s redisstore.Stats) uint64 { return s.Fallbacks }),
		counter("mailedge_redis_unavailable_total", "Limiter events refused with a temporary error while Redis was down (fail closed).",
			func(s redisstore.Stats) uint64 { return s.Unavailable }),
		counter("mailedge_redis_outages_total", "Times Redis stopped answering.",
			func(s redisstore.Stats) uint64 { return s.Outages }),
		counter("mailedge_redis_recoveries_total", "Times Redis answered again after an outage.",
			func(s redisstore.Stats) uint64 { return s.Recoveries }),
		counter("mailedge_redis_lease_renewals_total", "Times this replica renewed its lease and rewrote its in-flight counts.",
			func(s redisstore.Stats) uint64 { return s.Renewals }),
	)
}

// addTicketKeys exports the number of session-ticket keys of -ticket-keys.
func (m *metrics) addTicketKeys(rot *ticketkeys.Rotator) {
	if m == nil || rot == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailedge_ticket_keys",
		Help: "TLS session-ticket keys loaded from -ticket-keys (0 before the first successful poll: sessions resume on this replica only)."},
		func() float64 { return float64(rot.Status().Keys) }))
}
