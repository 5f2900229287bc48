package mailtest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
)

// Script is a fake server's behaviour for NewFake, line by line: the
// greeting, then an answer per command verb ("EHLO", "CAPABILITY",
// "CAPA", "STARTTLS", "STLS", ...). An answer is a format string that gets
// the command's IMAP tag for its %s. After the answer to STARTTLS or STLS,
// the Script runs a TLS handshake when TLSConfig is set and then discards
// whatever comes. An unknown verb gets "tag BAD unknown" (IMAP) or
// "500 unknown".
type Script struct {
	// Greeting is written first, as it is. If empty, nothing is.
	Greeting string
	// Answers maps an upper-case verb to its answer. If nil, every
	// command is unknown.
	Answers map[string]string
	// TLSConfig is the server side of the handshake after STARTTLS or
	// STLS. If nil, there is none.
	TLSConfig *tls.Config
}

// Serve runs the Script on c until the peer closes it or sends a line the
// Script ends on. It does not close c.
func (s Script) Serve(c net.Conn) {
	io.WriteString(c, s.Greeting)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		// "tag VERB" when the second word is a scripted verb (IMAP), else
		// "VERB args" (SMTP, POP3).
		tag, verb := "", ""
		f := strings.Fields(line)
		if len(f) >= 2 && s.Answers[strings.ToUpper(f[1])] != "" {
			tag, verb = f[0], strings.ToUpper(f[1])
		} else if len(f) > 0 {
			verb = strings.ToUpper(f[0])
		}
		answer, ok := s.Answers[verb]
		if !ok {
			io.WriteString(c, map[bool]string{true: tag + " BAD unknown\r\n", false: "500 unknown\r\n"}[tag != ""])
			continue
		}
		if strings.Contains(answer, "%s") {
			answer = fmt.Sprintf(answer, tag)
		}
		io.WriteString(c, answer)
		if (verb == "STARTTLS" || verb == "STLS") && s.TLSConfig != nil {
			tls.Server(c, s.TLSConfig).Handshake()
			io.Copy(io.Discard, c)
			return
		}
	}
}
