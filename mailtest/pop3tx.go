package mailtest

import (
	"errors"
	"fmt"
	"time"
)

// pop3RetrTimeout bounds writing one RETR or TOP answer.
const pop3RetrTimeout = 5 * time.Minute

// transaction handles a command in the TRANSACTION state (RFC 1939 §5).
func (p *pop3Session) transaction(cmd pop3Command) error {
	switch cmd.name {
	case "CAPA":
		return p.capa()
	case "NOOP":
		return p.reply("+OK")
	case "STAT":
		n, size := p.md.stat()
		return p.reply("+OK %d %d", n, size)
	case "LIST", "UIDL":
		return p.list(cmd)
	case "RETR", "TOP":
		return p.retr(cmd)
	case "DELE":
		return p.dele(cmd)
	case "RSET":
		for i := range p.md.msgs {
			p.md.msgs[i].deleted = false
		}
		n, size := p.md.stat()
		return p.reply("+OK maildrop has %d messages (%d octets)", n, size)
	case "QUIT":
		return p.quit()
	case "USER", "PASS", "STLS":
		return p.fail("command not valid in this state")
	}
	return p.fail("unknown command")
}

// stat counts the messages not marked deleted and their octets.
func (md *maildrop) stat() (n int, size int64) {
	for _, m := range md.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

// message resolves a message-number argument to a 0-based index.
func (p *pop3Session) message(arg string) (int, error) {
	n, err := parseNumber(arg)
	if err != nil || n < 1 || n > len(p.md.msgs) || p.md.msgs[n-1].deleted {
		return 0, errors.New("no such message")
	}
	return n - 1, nil
}

// scanLine is one line of LIST or UIDL: the size or the unique-id.
func (p *pop3Session) scanLine(name string, i int) string {
	m := p.md.msgs[i]
	if name == "LIST" {
		return fmt.Sprintf("%d %d", i+1, m.size)
	}
	// RFC 1939 §7: unique-id is 1 to 70 characters in 0x21..0x7E and
	// persists across sessions: UIDVALIDITY and UID together do.
	return fmt.Sprintf("%d %d.%d", i+1, p.md.uidValidity, m.uid)
}

// list answers LIST and UIDL, for one message or for all.
func (p *pop3Session) list(cmd pop3Command) error {
	switch len(cmd.args) {
	case 1:
		i, err := p.message(cmd.args[0])
		if err != nil {
			return p.fail(err.Error())
		}
		return p.reply("+OK %s", p.scanLine(cmd.name, i))
	case 0:
		p.conn.SetWriteDeadline(time.Now().Add(pop3WriteTimeout))
		n, size := p.md.stat()
		fmt.Fprintf(p.bw, "+OK %d messages (%d octets)\r\n", n, size)
		for i, m := range p.md.msgs {
			if !m.deleted {
				fmt.Fprintf(p.bw, "%s\r\n", p.scanLine(cmd.name, i))
			}
		}
		p.bw.WriteString(".\r\n")
		return p.bw.Flush()
	}
	return p.fail(cmd.name + " takes at most one argument")
}

// retr answers RETR msg and TOP msg n with the dot-stuffed message.
func (p *pop3Session) retr(cmd pop3Command) error {
	want := 1
	if cmd.name == "TOP" {
		want = 2
	}
	if len(cmd.args) != want {
		return p.fail(fmt.Sprintf("%s takes %d argument(s)", cmd.name, want))
	}
	i, err := p.message(cmd.args[0])
	if err != nil {
		return p.fail(err.Error())
	}
	lines := -1
	if cmd.name == "TOP" {
		if lines, err = parseNumber(cmd.args[1]); err != nil {
			return p.fail("bad line count")
		}
	}
	msg, err := p.md.fetch(i)
	if errors.Is(err, errMessageGone) {
		return p.fail("message was removed by another session")
	}
	if err != nil {
		p.s.log.Error("mailtest: pop3 fetch", "user", p.user, "err", err)
		return p.fail("[SYS/TEMP] cannot read message")
	}
	if lines >= 0 {
		msg = topOf(msg, lines)
	}
	p.conn.SetWriteDeadline(time.Now().Add(pop3RetrTimeout))
	fmt.Fprintf(p.bw, "+OK %d octets\r\n", p.md.msgs[i].size)
	writeDotStuffed(p.bw, msg)
	return p.bw.Flush()
}

// dele marks a message deleted; it goes at QUIT.
func (p *pop3Session) dele(cmd pop3Command) error {
	if len(cmd.args) != 1 {
		return p.fail("DELE takes one argument")
	}
	i, err := p.message(cmd.args[0])
	if err != nil {
		return p.fail(err.Error())
	}
	p.md.msgs[i].deleted = true
	return p.reply("+OK message %d deleted", i+1)
}

// quit enters the UPDATE state: deletions are applied, then the session ends.
func (p *pop3Session) quit() error {
	err := p.md.commit()
	n, _ := p.md.stat()
	// UPDATE state (RFC 1939 §6): the maildrop is released before the
	// answer, so a client that logs in again right after QUIT finds it free.
	p.md.close()
	p.md = nil
	p.s.unlockMaildrop(p.user)
	if err != nil {
		p.s.log.Error("mailtest: pop3 update", "user", p.user, "err", err)
		p.reply("-ERR [SYS/TEMP] some deleted messages not removed")
		return errQuit
	}
	p.reply("+OK %s POP3 server signing off (%d messages left)", p.s.hostname(), n)
	return errQuit
}
