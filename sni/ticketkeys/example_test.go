package ticketkeys_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailedge/mailedge/sni/ticketkeys"
)

// Example shares the keys of a file, such as a Kubernetes Secret mounted
// into every replica, with a listener's *tls.Config. The writer rotates by
// putting a new key first and keeping the previous one second.
func Example() {
	dir, err := os.MkdirTemp("", "ticketkeys-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ticket-keys")

	var current [32]byte
	rand.Read(current[:])
	if err := os.WriteFile(path, ticketkeys.Format([][32]byte{current}), 0o600); err != nil {
		log.Fatal(err)
	}

	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // in the gateway: store.TLSConfig(policy)
	rot := &ticketkeys.Rotator{
		Source:  ticketkeys.FileSource{Path: path},
		OnError: func(err error) { fmt.Println("reported:", strings.TrimPrefix(err.Error(), "ticketkeys: "+path+": ")) },
	}
	rot.Add(cfg)
	if err := rot.Refresh(context.Background()); err != nil {
		log.Fatal(err)
	}
	// In the gateway: go rot.Run(ctx)
	fmt.Println("keys:", rot.Status().Keys, "encrypting with the current key:", rot.Status().Fingerprint == ticketkeys.Fingerprint(current))

	// The secret store rotates: a new key first, the previous one still
	// accepted.
	var next [32]byte
	rand.Read(next[:])
	if err := os.WriteFile(path, ticketkeys.Format([][32]byte{next, current}), 0o600); err != nil {
		log.Fatal(err)
	}
	if err := rot.Refresh(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("keys:", rot.Status().Keys, "encrypting with the new key:", rot.Status().Fingerprint == ticketkeys.Fingerprint(next))

	// A broken file is refused and the keys stay.
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		log.Fatal(err)
	}
	_ = rot.Refresh(context.Background()) // reported through OnError
	fmt.Println("keys:", rot.Status().Keys)
	// Output:
	// keys: 1 encrypting with the current key: true
	// keys: 2 encrypting with the new key: true
	// reported: line 1: not a 32-byte key: 9 characters where 64 hex digits or 44 base64 characters are expected
	// keys: 2
}
