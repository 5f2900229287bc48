package mailwire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 600)
	tests := []struct {
		name    string
		in      string
		max     int
		bufSize int
		want    []string // lines, then "" as the last read's line
		wantErr []error  // per read; nil means success
	}{
		{name: "crlf", in: "EHLO a\r\nQUIT\r\n", max: 512, want: []string{"EHLO a", "QUIT", ""}, wantErr: []error{nil, nil, io.EOF}},
		{name: "bare lf", in: "NOOP\nQUIT\n", max: 512, want: []string{"NOOP", "QUIT"}, wantErr: []error{nil, nil}},
		{name: "empty line", in: "\r\n", max: 512, want: []string{""}, wantErr: []error{nil}},
		{name: "exactly max", in: "1234\r\nok\r\n", max: 6, want: []string{"1234", "ok"}, wantErr: []error{nil, nil}},
		{name: "one over max resyncs", in: "12345\r\nok\r\n", max: 6, want: []string{"", "ok"}, wantErr: []error{ErrLineTooLong, nil}},
		{name: "long line resyncs", in: long + "\r\nQUIT\r\n", max: 512, want: []string{"", "QUIT"}, wantErr: []error{ErrLineTooLong, nil}},
		{name: "long line small buffer", in: long + "\r\nQUIT\r\n", max: 512, bufSize: 16, want: []string{"", "QUIT"}, wantErr: []error{ErrLineTooLong, nil}},
		{name: "line longer than buffer within max", in: long + "\r\n", max: 8192, bufSize: 16, want: []string{long}, wantErr: []error{nil}},
		{name: "partial line at eof", in: "QUIT", max: 512, want: []string{""}, wantErr: []error{io.ErrUnexpectedEOF}},
		{name: "long then eof cannot resync", in: long, max: 512, want: []string{""}, wantErr: []error{errNoLineEnd}},
		{name: "zero max means one", in: "\n", max: 0, want: []string{""}, wantErr: []error{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.bufSize
			if size == 0 {
				size = 4096
			}
			r := bufio.NewReaderSize(strings.NewReader(tt.in), size)
			for i, want := range tt.want {
				line, err := readLineNoEOL(r, tt.max)
				if tt.wantErr[i] != nil {
					assert.ErrorIs(t, err, tt.wantErr[i], "read %d", i)
					assert.Nil(t, line, "read %d", i)
					continue
				}
				require.NoError(t, err, "read %d", i)
				assert.Equal(t, want, string(line), "read %d", i)
			}
		})
	}
}

func TestReadLineResynced(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader(strings.Repeat("a", 700)+"\nNEXT\n"), 16)
	_, err := readLineNoEOL(r, 100)
	require.ErrorIs(t, err, ErrLineTooLong)
	assert.True(t, Resynced(err), "got unresynced error %v", err)
	line, err := readLineNoEOL(r, 100)
	require.NoError(t, err)
	assert.Equal(t, "NEXT", string(line))
}

// TestReadLineDiscardBound feeds far more than maxDiscard bytes without a line
// feed: readLine must give up after a bounded amount instead of reading on.
func TestReadLineDiscardBound(t *testing.T) {
	src := &countingReader{}
	r := bufio.NewReaderSize(src, 4096)
	_, err := readLineNoEOL(r, 512)
	require.ErrorIs(t, err, ErrLineTooLong)
	assert.ErrorIs(t, err, errNoLineEnd)
	assert.False(t, Resynced(err))
	assert.LessOrEqual(t, src.n, maxDiscard+2*4096, "read %d bytes; want at most about %d", src.n, maxDiscard)
}

// TestReadLineKeepsResult checks that the returned slice does not alias the
// reader's buffer: later reads must not change it.
func TestReadLineKeepsResult(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("first\r\nsecond\r\n"), 16)
	a, err := readLineNoEOL(r, 512)
	require.NoError(t, err)
	_, err = readLineNoEOL(r, 512)
	require.NoError(t, err)
	assert.Equal(t, "first", string(a))
}

func TestReadRawLine(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("MAIL FROM:<a@b>\r\nX\n"))
	raw, err := ReadLine(r, 512)
	require.NoError(t, err)
	assert.Equal(t, "MAIL FROM:<a@b>\r\n", string(raw))
	raw, err = ReadLine(r, 512)
	require.NoError(t, err)
	assert.Equal(t, "X\n", string(raw))
}

func TestReadLineReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := bufio.NewReader(io.MultiReader(strings.NewReader("AB"), errReader{boom}))
	_, err := readLineNoEOL(r, 512)
	assert.ErrorIs(t, err, boom)
}

// countingReader yields an endless stream of 'x' and counts what it gave.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// readLineNoEOL is ReadLine without the line ending, as the dialogues use it.
func readLineNoEOL(r *bufio.Reader, max int) ([]byte, error) {
	raw, err := ReadLine(r, max)
	if err != nil {
		return nil, err
	}
	return TrimEOL(raw), nil
}
