// Package ticketkeys shares TLS session-ticket keys across a fleet of
// gateways, so that a client that resumes its TLS session on another
// replica than the one that issued its ticket gets a resumed handshake
// (RFC 8446 §2.2, RFC 5077) rather than a full one.
//
// A Source gives the current keys, newest first in the sense crypto/tls
// uses: the first key encrypts new tickets, every key decrypts. FileSource
// reads them from a file that a secret store writes (a Kubernetes Secret,
// Vault Agent, an operator's cron job); RedisSource keeps them in a Redis
// list and rotates them on a schedule, one replica creating each new key.
// A Rotator polls a Source and applies its keys to the *tls.Config of
// every listener with tls.Config.SetSessionTicketKeys; when the Source
// cannot be read it keeps the last keys it applied, so the replica goes on
// resuming the sessions of its peers that share those keys.
//
// Typical usage, with the configs that sni builds:
//
//	rot := &ticketkeys.Rotator{Source: &ticketkeys.RedisSource{Client: rdb}}
//	imaps := store.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})
//	smtps := store.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP})
//	rot.Add(imaps, smtps)
//	if err := rot.Refresh(ctx); err != nil {
//		log.Printf("ticket keys: %v (resuming on this replica only until the source answers)", err)
//	}
//	go rot.Run(ctx) // polls every minute; returns when ctx ends
//
// Which configs need the keys: crypto/tls takes the ticket keys of the
// config passed to tls.Server (tls.Listen, starttls.Server.TLSConfig),
// unless its GetConfigForClient returns a config whose keys were set
// explicitly (SessionTicketKey or SetSessionTicketKeys), whose keys then
// win. So every config handed to tls.Server must be added to the Rotator;
// a config returned by GetConfigForClient must either be added too or have
// no keys of its own. Beware of Clone: a clone of a config whose keys were
// set carries a copy of those keys, frozen at the time of the Clone, and
// stops following the rotation unless it is added to the Rotator as well.
// Clone before Add, or Add the clone.
//
// Before its first successful poll a Rotator leaves the configs alone, and
// crypto/tls uses its own automatic per-config keys: handshakes work, and
// sessions resume only on the replica that issued the ticket. Refresh
// returns the Source's error so that the caller decides whether a replica
// may start that way; Run keeps trying.
//
// Security: the keys protect the secrets of every session whose ticket
// they encrypt, past and future, for as long as they are kept (RFC 8446
// §C.4, RFC 5077 §5.5). Keep the file readable by the gateway only, Redis
// reachable by the fleet only (with AUTH and TLS across hosts), Rotate
// short enough (a day by default) and Grace small. No error of this
// package prints key material; Fingerprint names a key without revealing
// it, for comparing replicas.
//
// Concurrency: a Rotator's methods are safe for concurrent use; Run runs
// in the caller's goroutine and returns when its context ends. The package
// starts no goroutine of its own. Sources are safe for concurrent use.
package ticketkeys
