package sni

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MapLine is one entry of a Postfix SNI map source file
// (tls_server_sni_maps, as read by "postmap -F").
type MapLine struct {
	// Line is the number of the line where the entry starts, from 1.
	Line int
	// Name is the lookup key as written: "mail.example.com", ".example.com"
	// for every name below example.com, or "*.example.com".
	Name string
	// Files are the files whose PEM blocks, concatenated in this order, hold
	// the private key(s) and chain(s): each key first, then its leaf, then
	// the issuers. The common form is "hostname key_file cert_file".
	Files []string
}

// MapError reports a problem with one entry of a map file.
type MapError struct {
	// File is the map file; empty when the map came from an io.Reader.
	File string
	// Line is the line number, from 1.
	Line int
	// Err is the problem.
	Err error
}

// Error returns "sni: file:line: problem".
func (e *MapError) Error() string {
	msg := strings.TrimPrefix(e.Err.Error(), "sni: ")
	if e.File == "" {
		return fmt.Sprintf("sni: line %d: %s", e.Line, msg)
	}
	return fmt.Sprintf("sni: %s:%d: %s", e.File, e.Line, msg)
}

// Unwrap returns Err.
func (e *MapError) Unwrap() error { return e.Err }

// maxMapLine bounds one physical line of a map file.
const maxMapLine = 64 << 10

// ParsePostfixMap parses the Postfix lookup table source format used for
// tls_server_sni_maps (postmap(1), postconf(5)): one entry per logical line,
// "name file[, file...]"; a line that starts with white space continues the
// previous entry; blank lines and lines whose first non-blank character is
// "#" are ignored ("#" later in a line is not a comment, as in Postfix).
// Files are separated by white space or commas. Names are checked (host
// name, "*.domain" or ".domain"; IDNA allowed) and may appear only once.
// Errors are *MapError values with the line number.
func ParsePostfixMap(r io.Reader) ([]MapLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMapLine)
	var (
		out     []MapLine
		logical []string // fields of the entry being read
		start   int      // its first line
		n       int
	)
	flush := func() error {
		if logical == nil {
			return nil
		}
		ml, err := mapLine(start, logical, out)
		logical = nil
		if err != nil {
			return err
		}
		out = append(out, ml)
		return nil
	}
	for sc.Scan() {
		n++
		text := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(text)
		switch {
		case trimmed == "" || trimmed[0] == '#':
			continue
		case text[0] == ' ' || text[0] == '\t':
			if logical == nil {
				return nil, &MapError{Line: n, Err: errors.New("continuation line without an entry before it")}
			}
			logical = append(logical, splitFiles(trimmed)...)
		default:
			if err := flush(); err != nil {
				return nil, err
			}
			start, logical = n, strings.Fields(trimmed)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &MapError{Line: n + 1, Err: err}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// mapLine checks one logical line: a name, then at least one file.
func mapLine(line int, fields []string, seen []MapLine) (MapLine, error) {
	name := fields[0]
	key, p, err := canonical(name)
	if err != nil {
		return MapLine{}, &MapError{Line: line, Err: err}
	}
	for _, prev := range seen {
		if k, q, _ := canonical(prev.Name); k == key && q == p {
			return MapLine{}, &MapError{Line: line, Err: fmt.Errorf("duplicate entry for %q (first on line %d)", name, prev.Line)}
		}
	}
	var files []string
	for _, f := range fields[1:] {
		files = append(files, splitFiles(f)...)
	}
	if len(files) == 0 {
		return MapLine{}, &MapError{Line: line, Err: fmt.Errorf("no key and certificate files for %q", name)}
	}
	return MapLine{Line: line, Name: name, Files: files}, nil
}

// splitFiles splits a list of files on white space and commas.
func splitFiles(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r'
	})
}

// LoadPostfixMap reads a Postfix SNI map source file and the key and
// certificate files it names. Relative file names are taken relative to
// the map's folder. Each entry serves its certificate(s) for the entry's
// name; an entry whose files hold both an RSA and an ECDSA chain yields two
// entries. Errors name the map file and line, and the PEM file at fault.
func LoadPostfixMap(path string) ([]Entry, error) {
	entries, _, err := loadPostfixMap(path)
	return entries, err
}

// loadPostfixMap also returns every file it read, for Watch.
func loadPostfixMap(path string) ([]Entry, []string, error) {
	files := []string{path}
	f, err := os.Open(path)
	if err != nil {
		return nil, files, fmt.Errorf("sni: postfix map: %w", err)
	}
	lines, err := ParsePostfixMap(f)
	f.Close()
	if err != nil {
		var me *MapError
		if errors.As(err, &me) {
			me.File = path
		}
		return nil, files, err
	}
	dir := filepath.Dir(path)
	cache := make(map[string][]loadedChain) // the same files on several lines
	var entries []Entry
	for _, ml := range lines {
		paths := make([]string, len(ml.Files))
		for i, name := range ml.Files {
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			paths[i] = name
		}
		files = append(files, paths...)
		key := strings.Join(paths, "\x00")
		certs, ok := cache[key]
		if !ok {
			if certs, err = loadChains(paths); err != nil {
				return nil, files, &MapError{File: path, Line: ml.Line, Err: err}
			}
			cache[key] = certs
		}
		for _, c := range certs {
			entries = append(entries, Entry{Certificate: c.cert, Names: []string{ml.Name}, Source: c.file})
		}
	}
	return entries, files, nil
}

// loadedChain is a parsed chain and the file that held its leaf.
type loadedChain struct {
	cert *tls.Certificate
	file string
}

// loadChains reads files in order and parses the key/chain sequences their
// PEM blocks form.
func loadChains(paths []string) ([]loadedChain, error) {
	var items []pemItem
	for _, p := range paths {
		it, err := readPEM(p)
		if err != nil {
			return nil, err
		}
		items = append(items, it...)
	}
	chains, err := chainsOf(items)
	if err != nil {
		return nil, err
	}
	out := make([]loadedChain, 0, len(chains))
	for _, c := range chains {
		cert, err := c.certificate()
		if err != nil {
			return nil, err
		}
		out = append(out, loadedChain{cert: cert, file: c.certFile})
	}
	return out, nil
}
