package mailtest

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// POP3 wire limits. RFC 2449 §4 caps command lines at 255 octets; the
// demo allows 512, the response limit, to be lenient with long passwords.
const (
	pop3MaxLine   = 512
	pop3MaxErrors = 10 // close after this many bad commands, like nginx max_errors
)

// POP3 wire errors.
var (
	errLineTooLong = errors.New("mailtest: pop3 line too long")
	errBadCommand  = errors.New("mailtest: pop3 bad command syntax")
	errBadNumber   = errors.New("mailtest: pop3 bad number")
)

// pop3Command is one parsed POP3 command line: an upper-cased keyword and
// its arguments. PASS keeps the whole rest of the line as one argument, as
// RFC 1939 §7 allows, since passwords may contain spaces.
type pop3Command struct {
	name string
	args []string
}

// parsePOP3Command parses a command line without its CRLF. Keywords are 3
// or 4 letters (RFC 1939 §3, RFC 2449 §3); arguments are printable ASCII
// separated by single spaces.
func parsePOP3Command(line string) (pop3Command, error) {
	name, rest, hasArgs := strings.Cut(line, " ")
	if len(name) < 3 || len(name) > 4 {
		return pop3Command{}, errBadCommand
	}
	for i := 0; i < len(name); i++ {
		if c := name[i] | 0x20; c < 'a' || c > 'z' {
			return pop3Command{}, errBadCommand
		}
	}
	cmd := pop3Command{name: strings.ToUpper(name)}
	if !hasArgs {
		return cmd, nil
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < 0x20 || c > 0x7e {
			return pop3Command{}, errBadCommand
		}
	}
	if cmd.name == "PASS" {
		cmd.args = []string{rest}
		return cmd, nil
	}
	cmd.args = strings.Split(rest, " ")
	for _, a := range cmd.args {
		if a == "" {
			return pop3Command{}, errBadCommand
		}
	}
	return cmd, nil
}

// String formats c as a command line without CRLF; parsing it gives c back.
func (c pop3Command) String() string {
	if len(c.args) == 0 {
		return c.name
	}
	return c.name + " " + strings.Join(c.args, " ")
}

// parseNumber parses a non-negative decimal argument (RFC 1939 message
// numbers and TOP's line count): digits only, no sign, at most 9 digits.
func parseNumber(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, errBadNumber
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadNumber
		}
	}
	return strconv.Atoi(s)
}

// readPOP3Line reads one line, strips CRLF (or a bare LF), and refuses
// lines longer than pop3MaxLine without buffering them whole.
func readPOP3Line(br *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > pop3MaxLine+2 {
			return "", errLineTooLong
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		return string(line), nil
	}
}

// writeDotStuffed writes msg as the body of a multi-line response (RFC 1939
// §3): every line that starts with "." gets one more, lines end in CRLF, and
// the terminating ".\r\n" follows. msg is expected in CRLF form already;
// bare LF and CR are written as CRLF all the same.
func writeDotStuffed(w *bufio.Writer, msg []byte) error {
	atStart := true
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if atStart && c == '.' {
			w.WriteByte('.')
		}
		switch {
		case c == '\r' && i+1 < len(msg) && msg[i+1] == '\n':
			i++
			fallthrough
		case c == '\r' || c == '\n':
			w.WriteString("\r\n")
			atStart = true
		default:
			w.WriteByte(c)
			atStart = false
		}
	}
	if !atStart {
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}

// topOf returns the header of msg, the blank line, and the first n lines
// of its body (RFC 1939 TOP). A message without a blank line is all header.
func topOf(msg []byte, n int) []byte {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		return msg
	}
	end := i + 4
	for ; n > 0 && end < len(msg); n-- {
		j := bytes.Index(msg[end:], []byte("\r\n"))
		if j < 0 {
			return msg
		}
		end += j + 2
	}
	return msg[:end]
}
