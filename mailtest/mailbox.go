package mailtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// errMessageGone is returned by maildrop.fetch when another client (IMAP)
// expunged the message during the POP3 session.
var errMessageGone = errors.New("mailtest: message was removed")

// Deliver appends msg to the INBOX of the local account to. Line endings
// are normalised to CRLF, as IMAP and POP3 require. Deliver adds no header:
// the SMTP servers add Return-Path and Received before calling it.
func (s *System) Deliver(to string, msg []byte) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !s.isLocal(to) {
		return fmt.Errorf("%w: %s", ErrNotLocal, to)
	}
	name, ok := s.lookup(to)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownUser, to)
	}
	buf := normaliseCRLF(msg)
	_, err := s.boxes[name].Append("INBOX", bytes.NewReader(buf), &imap.AppendOptions{Time: time.Now()})
	if err != nil {
		return fmt.Errorf("mailtest: deliver to %s: %w", name, err)
	}
	s.log.Info("mailtest: delivered", "to", name, "bytes", len(buf))
	return nil
}

// Messages returns the messages in user's INBOX, oldest first, exactly as
// IMAP and POP3 serve them. It reads through the same in-process IMAP path
// that POP3 uses.
func (s *System) Messages(ctx context.Context, user string) ([][]byte, error) {
	name, ok := s.lookup(user)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownUser, user)
	}
	md, err := s.openMaildrop(ctx, name, s.users[name])
	if err != nil {
		return nil, err
	}
	defer md.close()
	out := make([][]byte, 0, len(md.msgs))
	for i := range md.msgs {
		b, err := md.fetch(i)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// normaliseCRLF turns bare LF and bare CR into CRLF.
func normaliseCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// maildrop is a POP3 view of one INBOX (RFC 1939 §3): a snapshot of the
// messages present at login, numbered from 1, read and expunged through an
// in-process IMAP client so that IMAP sees POP3's deletions and POP3 never
// serves a message IMAP has expunged.
type maildrop struct {
	c           *imapclient.Client
	stop        func() bool
	uidValidity uint32
	msgs        []dropMsg
}

// dropMsg is one message of the snapshot.
type dropMsg struct {
	uid     imap.UID
	size    int64
	deleted bool
}

// openMaildrop logs in as user and snapshots the INBOX. A wrong password
// gives an error wrapping imapserver's authentication failure.
func (s *System) openMaildrop(ctx context.Context, user, pass string) (*maildrop, error) {
	conn, err := s.dialInternal(ctx)
	if err != nil {
		return nil, err
	}
	md := &maildrop{c: imapclient.New(conn, nil)}
	// Ending ctx (or the System) closes the pipe, which fails any command
	// under way instead of leaving it blocked.
	md.stop = context.AfterFunc(ctx, func() { conn.Close() })
	if err := md.load(user, pass); err != nil {
		md.close()
		return nil, err
	}
	return md, nil
}

// load logs in, selects INBOX and lists its UIDs and sizes.
func (md *maildrop) load(user, pass string) error {
	if err := md.c.Login(user, pass).Wait(); err != nil {
		return fmt.Errorf("mailtest: login: %w", err)
	}
	sel, err := md.c.Select("INBOX", nil).Wait()
	if err != nil {
		return fmt.Errorf("mailtest: select INBOX: %w", err)
	}
	md.uidValidity = sel.UIDValidity
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	bufs, err := md.c.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		return fmt.Errorf("mailtest: list INBOX: %w", err)
	}
	for _, b := range bufs {
		md.msgs = append(md.msgs, dropMsg{uid: b.UID, size: b.RFC822Size})
	}
	return nil
}

// fetch returns message i (0-based) and marks it \Seen, as Dovecot's POP3
// server does by default.
func (md *maildrop) fetch(i int) ([]byte, error) {
	section := &imap.FetchItemBodySection{}
	bufs, err := md.c.Fetch(imap.UIDSetNum(md.msgs[i].uid), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("mailtest: fetch: %w", err)
	}
	if len(bufs) == 0 {
		return nil, errMessageGone
	}
	return bufs[0].FindBodySection(section), nil
}

// commit expunges the messages marked deleted (RFC 1939 UPDATE state). It
// uses UID EXPUNGE so that messages an IMAP client flagged \Deleted are
// left alone.
func (md *maildrop) commit() error {
	var uids imap.UIDSet
	for _, m := range md.msgs {
		if m.deleted {
			uids.AddNum(m.uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := md.c.Store(uids, store, nil).Close(); err != nil {
		return fmt.Errorf("mailtest: store \\Deleted: %w", err)
	}
	if err := md.c.UIDExpunge(uids).Close(); err != nil {
		return fmt.Errorf("mailtest: expunge: %w", err)
	}
	return nil
}

// close logs out and waits for the client's reader goroutine.
func (md *maildrop) close() {
	md.stop()
	if md.c.State() != imap.ConnStateLogout {
		md.c.Logout().Wait()
	}
	md.c.Close()
}
