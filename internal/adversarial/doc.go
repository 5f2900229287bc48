// Package adversarial is mailedge's black-box security suite: the known
// attacks on STARTTLS (RFC 3207, RFC 9051 section 6.2.1, RFC 2595) and on mail
// proxies, replayed against the exported APIs of sni, starttls, backend,
// bridge, monitor, ratelimit and the whole connection path of mailedge.Proxy.
//
// The cases come from the USENIX Security 2021 STARTTLS study (Poddebniak,
// Ising, Böck, Schinzel: command injection, response injection, the
// fake-mail-server backend behaviours), the ALPACA cross-protocol attack
// (RFC 7301 ALPN as its mitigation), nginx's mail_*.t tests (pipelining,
// max_errors, line limits, client certificates), HAProxy's reg-tests
// (smtp-check.vtc verdicts, the PROXY protocol) and the CVEs CVE-2011-0411,
// CVE-2021-33515, CVE-2021-38371 and CVE-2019-11500. SECURITY.md at the root
// of the module maps every class (A to G) to the test that covers it.
//
// The package holds no code besides this comment; everything is in its
// _test.go files, one per class:
//
//	client_test.go    A  toward clients (starttls.Server, mailedge.Proxy)
//	backend_test.go   B  toward backends (starttls.Client, backend.Dialer)
//	implicit_test.go  C  implicit TLS: ALPN, SNI, client certificates
//	parsing_test.go   D  parsing and limits before TLS, SMTP DATA framing
//	identity_test.go  E  what the proxy writes to backends: XCLIENT, PROXY
//	probe_test.go     F  monitor verdicts
//	limits_test.go    G  handshake deadlines and per-source caps
//
// Typical usage:
//
//	go test -race ./internal/adversarial/
//	go test -race -run 'TestClientSide/A1' -v ./internal/adversarial/
//
// A case that exposes a library bug keeps running every assertion up to the
// one that fails and then skips with "known failure: ...; see SECURITY.md"
// (the helper knownFailure), so CI stays green, the finding stays visible in
// -v output, and the case starts passing by itself once the bug is fixed.
//
// Connection ownership and concurrency: every test owns the listeners, fake
// servers and goroutines it starts and waits for them in t.Cleanup; tests
// that check for leaked goroutines (internal/leaktest) do not run in
// parallel.
package adversarial
