// Package bufpool recycles the bufio.Readers that the per-connection
// dialogues (greetings, handovers, backend dials) use for a few lines and
// then drop, so a connection costs no reader allocation.
//
// The pools are caches, not state: a reader taken with Get is reset onto
// the caller's source and must be given back with Put once nothing refers
// to its buffer any more (copy out what Peek returned first).
package bufpool

import (
	"bufio"
	"io"
	"sync"
)

// Sizes of the pooled readers.
const (
	Small = 4 << 10 // a greeting, a reply, a command line
	Large = 8 << 10 // an IMAP/SMTP line of up to 8 KiB
)

var small, large = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, Small) }},
	sync.Pool{New: func() any { return bufio.NewReaderSize(nil, Large) }}

// Get returns a reader over r with a buffer of Small bytes, or Large when
// size is above Small.
func Get(r io.Reader, size int) *bufio.Reader {
	p := &small
	if size > Small {
		p = &large
	}
	br := p.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// Put gives br back. It must not be used afterwards, nor any slice that
// Peek or ReadSlice returned from it.
func Put(br *bufio.Reader) {
	if br == nil {
		return
	}
	size := br.Size()
	br.Reset(nil) // drop the reference to the source
	switch size {
	case Small:
		small.Put(br)
	case Large:
		large.Put(br)
	}
}
