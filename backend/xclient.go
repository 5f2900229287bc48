package backend

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// maxXCLIENTLine is the longest XCLIENT command line sent, CRLF included:
// Postfix reads commands of up to 512 octets (RFC 5321 §4.5.3.1.4).
const maxXCLIENTLine = 512

// unavailable is Postfix's value for an attribute the proxy does not know.
const unavailable = "[UNAVAILABLE]"

// xtext encodes s as RFC 3461 §4 xtext, the encoding Postfix's XCLIENT
// expects: printable ASCII other than "+" and "=" as is, every other byte
// (space, CR, LF, controls, UTF-8) as "+XX". The result never contains a
// space, CR or LF, so it can neither end the command nor add an attribute.
func xtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// XText returns s as RFC 3461 §4 xtext, as XCLIENT sends every value
// (package auth sends XCLIENT LOGIN= with it): every byte but printable
// ASCII other than "+" and "=" becomes "+XX", so a value can neither end
// the command nor add an attribute.
func XText(s string) string { return xtext(s) }

// xclientAttrs returns the attributes for ci in the order Postfix
// documents, keeping only those the backend advertised (all of them if the
// EHLO keyword lists none).
func xclientAttrs(ci ClientInfo, advertised []string) []string {
	src, dst := tcpAddr(ci.Src), tcpAddr(ci.Dst)
	vals := [][2]string{
		{"ADDR", xclientAddr(src)},
		{"PORT", xclientPort(src)},
		{"DESTADDR", xclientAddr(dst)},
		{"DESTPORT", xclientPort(dst)},
		{"HELO", unavailable},
		{"PROTO", unavailable},
	}
	if ci.Helo != "" {
		vals[4][1] = xtext(ci.Helo)
	}
	switch strings.ToUpper(ci.HeloVerb) {
	case "EHLO":
		vals[5][1] = "ESMTP"
	case "HELO":
		vals[5][1] = "SMTP"
	}
	var attrs []string
	for _, kv := range vals {
		if len(advertised) > 0 && !containsFold(advertised, kv[0]) {
			continue
		}
		// Postfix takes [UNAVAILABLE] for HELO but not for PROTO ("501 5.5.4
		// Bad PROTO syntax"). On an implicit-TLS listener the backend is
		// dialled before the client's EHLO: leave both out, and the
		// client's own EHLO after the new greeting sets them.
		if (kv[0] == "HELO" || kv[0] == "PROTO") && kv[1] == unavailable {
			continue
		}
		attr := kv[0] + "=" + kv[1]
		if len("XCLIENT "+attr+"\r\n") > maxXCLIENTLine {
			attr = kv[0] + "=" + unavailable // only an absurd HELO gets here
		}
		attrs = append(attrs, attr)
	}
	return attrs
}

func xclientAddr(a *net.TCPAddr) string {
	if a == nil {
		return unavailable
	}
	if a.IP.To4() != nil {
		return a.IP.String()
	}
	return "IPV6:" + a.IP.String()
}

func xclientPort(a *net.TCPAddr) string {
	if a == nil {
		return unavailable
	}
	return strconv.Itoa(a.Port)
}

// xclientLines packs attrs into as few "XCLIENT ..." lines of at most
// maxXCLIENTLine octets as it can. Postfix accepts the command repeatedly.
func xclientLines(attrs []string) []string {
	var lines []string
	cur := "XCLIENT"
	for _, a := range attrs {
		if cur != "XCLIENT" && len(cur)+1+len(a)+2 > maxXCLIENTLine {
			lines = append(lines, cur+"\r\n")
			cur = "XCLIENT"
		}
		cur += " " + a
	}
	if cur != "XCLIENT" {
		lines = append(lines, cur+"\r\n")
	}
	return lines
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// ehloKeyword returns the parameters of keyword in an EHLO reply, and
// whether the keyword was present.
func ehloKeyword(rp mailwire.Reply, keyword string) ([]string, bool) {
	for _, line := range rp.Keywords() {
		if mailwire.KeywordIs([]byte(line), keyword) {
			return strings.Fields(line)[1:], true
		}
	}
	return nil, false
}

// xclient sends XCLIENT for ci and returns the new 220 greeting. It first
// sends EHLO to learn whether XCLIENT is offered; if not, it returns
// ErrIdentity, or, with bestEffort, nil and no greeting.
func xclient(br *bufio.Reader, w io.Writer, hostname string, ci ClientInfo, max int, bestEffort bool) ([]byte, error) {
	rp, err := command(br, w, "EHLO "+hostname+"\r\n", max)
	if err != nil {
		return nil, err
	}
	if rp.Code != 250 {
		return nil, fmt.Errorf("%w: EHLO answered %q", ErrProtocol, firstLine(rp.Raw))
	}
	advertised, ok := ehloKeyword(rp, "XCLIENT")
	if !ok {
		if bestEffort {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: XCLIENT not advertised in the EHLO reply", ErrIdentity)
	}
	var greeting []byte
	for _, line := range xclientLines(xclientAttrs(ci, advertised)) {
		if rp, err = command(br, w, line, max); err != nil {
			return nil, err
		}
		if rp.Code != 220 {
			return nil, fmt.Errorf("%w: XCLIENT answered %q", ErrIdentity, firstLine(rp.Raw))
		}
		greeting = rp.Raw
	}
	return greeting, nil
}

// command writes line and reads one SMTP reply.
func command(br *bufio.Reader, w io.Writer, line string, max int) (mailwire.Reply, error) {
	if _, err := io.WriteString(w, line); err != nil {
		return mailwire.Reply{}, err
	}
	return readReply(br, max)
}

func firstLine(b []byte) []byte {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return bytes.TrimRight(line, "\r")
}
