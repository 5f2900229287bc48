package starttls

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// maxDiscard bounds how many bytes readLine throws away after an over-long
// line while it looks for the line end to resynchronise on. A peer that sends
// more than this without a line feed is not speaking the protocol; the caller
// must close the connection.
const maxDiscard = 64 << 10

// errNoLineEnd is wrapped together with ErrLineTooLong when readLine gave up
// discarding an over-long line (no LF within maxDiscard bytes, or the peer
// hung up): the dialogue cannot resynchronise and the connection must close.
var errNoLineEnd = errors.New("no line end to resynchronise on")

// readLine reads one line of at most max bytes, counting its terminator, and
// returns it without the terminator ("\r\n" or a bare "\n"). The result is a
// fresh slice the caller may keep. See readRawLine for the errors.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	raw, err := readRawLine(r, max)
	if err != nil {
		return nil, err
	}
	return trimEOL(raw), nil
}

// readRawLine reads one line of at most max bytes including its terminating
// LF and returns it with the terminator, as a fresh slice.
//
// Memory stays bounded by max plus r's buffer size whatever the peer sends.
// If the line is longer than max, readRawLine discards input up to and
// including the next LF, so that the next call starts on a fresh line, and
// returns an error wrapping ErrLineTooLong. If no LF comes within maxDiscard
// bytes (or the input ends first) the error also wraps errNoLineEnd and the
// stream is out of step; use resynced to tell the two apart.
//
// At the end of input readRawLine returns io.EOF if nothing was read, and
// io.ErrUnexpectedEOF for a partial line: an unterminated line is never
// returned as a command. A max below 1 means 1.
func readRawLine(r *bufio.Reader, max int) ([]byte, error) {
	if max < 1 {
		max = 1
	}
	var acc []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(acc)+len(frag) > max {
			return nil, discardLine(r, frag, err)
		}
		switch {
		case err == nil:
			return append(acc, frag...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			// Copy before the next ReadSlice overwrites the buffer.
			acc = append(acc, frag...)
		case errors.Is(err, io.EOF) && len(acc)+len(frag) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// discardLine skips the rest of an over-long line. frag and err are the
// result of the ReadSlice that crossed the limit.
func discardLine(r *bufio.Reader, frag []byte, err error) error {
	discarded := len(frag)
	for {
		if err == nil {
			return fmt.Errorf("%w: over the limit, %d bytes skipped", ErrLineTooLong, discarded)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%w: %w (%w)", ErrLineTooLong, errNoLineEnd, err)
		}
		if discarded >= maxDiscard {
			return fmt.Errorf("%w: %w within %d bytes", ErrLineTooLong, errNoLineEnd, discarded)
		}
		frag, err = r.ReadSlice('\n')
		discarded += len(frag)
	}
}

// resynced reports whether err from readLine is an over-long line after which
// the reader stands at the start of the next line, so the dialogue may answer
// with an error and go on.
func resynced(err error) bool {
	return errors.Is(err, ErrLineTooLong) && !errors.Is(err, errNoLineEnd)
}

// trimEOL removes a trailing "\n" or "\r\n".
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}
