package ticketkeys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxFileSize bounds what FileSource reads: MaxKeys keys with generous
// comments fit many times over.
const maxFileSize = 64 << 10

// FileSource reads the keys from a file that a secret store writes, in
// the format of Parse: one key per line, newest (encrypting) first, for
// example
//
//	# mailedge TLS session-ticket keys, newest first
//	vJ0yMxzbF8z6b1tYvM0b1cFQ8xq9Qy9o3P0e2H4mXcA=   # since 2026-12-01
//	6f1c2d...(64 hex digits)...                      # previous, still accepted
//
// Rotation is the writer's: it puts a new key (`openssl rand -base64 32`)
// on the first line and keeps the previous ones below it for as long as
// their tickets should still resume, then drops them. The file should be
// replaced by a rename (as Kubernetes and Vault Agent do), so that a
// reader never sees half of it; a torn or otherwise invalid file is an
// error and the Rotator keeps its last keys.
//
// Replicas pick up a new file at their next poll, so for up to one
// Rotator.Interval a ticket issued with the new key by a replica that
// already has it does not resume on one that does not yet: a writer that
// cares can add the new key second first (accepted everywhere), and move
// it to the first line one interval later.
//
// The zero value is not usable: Path is required.
type FileSource struct {
	// Path is the file's path.
	Path string
}

// Keys reads and parses the file. Its errors name the file and the line,
// never the key material.
func (s FileSource) Keys(ctx context.Context) ([][32]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.Path == "" {
		return nil, errors.New("ticketkeys: FileSource.Path is empty")
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, fmt.Errorf("ticketkeys: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("ticketkeys: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("ticketkeys: %s: larger than %d bytes", s.Path, maxFileSize)
	}
	keys, err := Parse(data)
	if err != nil {
		return nil, pathError{s.Path, err}
	}
	return keys, nil
}

// pathError puts a file's path into an error of Parse, after the package
// prefix: "ticketkeys: /run/keys: line 3: ...". It unwraps to Parse's
// error, so errors.Is(err, ErrNoKeys) holds.
type pathError struct {
	path string
	err  error
}

func (e pathError) Error() string {
	return "ticketkeys: " + e.path + ": " + strings.TrimPrefix(e.err.Error(), "ticketkeys: ")
}

func (e pathError) Unwrap() error { return e.err }
