// Package integration holds mailedge's integration suite: the gateway of
// examples/gateway built and run as a subprocess between real servers
// (Dovecot 2.3 for IMAP and POP3 (RFC 9051, RFC 1939) and SASL, Postfix 3
// for SMTP submission and relay (RFC 5321, RFC 6409, RFC 8314)) and real
// clients (curl, swaks, openssl s_client, Python's imaplib, smtplib and
// poplib).
//
// The package has no code of its own; everything is in its tests.
//
// Typical usage:
//
//	go test -race ./integration/                            # runs if dovecot and postfix are installed
//	MAILEDGE_INTEGRATION=require go test -race ./integration/ # CI: missing servers fail
//	MAILEDGE_INTEGRATION=off go test ./...                    # skip it
//	go test -short ./...                                      # skip it
//
// The suite needs root (Postfix and Dovecot start as root and drop
// privileges to their own users) and the Debian packages dovecot-core,
// dovecot-imapd, dovecot-pop3d, postfix, swaks, curl, openssl and python3.
// Each run starts its own Dovecot and Postfix instances on unprivileged
// loopback ports with configuration in a temporary folder, and tears them
// down at the end, even when a test fails.
//
// Connection ownership and concurrency: TestMain owns every process it
// starts (the gateway, three Dovecot masters, one Postfix master) and stops
// them after the tests; tests run one after another (no t.Parallel), share
// those processes, and own only the client connections and client processes
// they start. Addresses: Dovecot and Postfix listen on 127.0.0.1, the
// gateway on 127.0.0.2, and clients connect from 127.0.0.3 where the client
// can choose its source, so each hop's address is distinct in the servers'
// logs (Dovecot treats a connection whose remote and local addresses are
// equal as secured).
package integration
