package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestReplies(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::7")
	tests := []struct {
		name             string
		err              error
		host             string
		smtp, imap, pop3 string
	}{
		{name: "nil"},
		{
			name: "in-flight", err: &LimitError{Kind: InFlight, Addr: a}, host: "mx.example.com",
			smtp: "421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1\r\n",
			imap: "* BYE [UNAVAILABLE] Too many connections from 192.0.2.1\r\n",
			pop3: "-ERR [SYS/TEMP] Too many connections from 192.0.2.1\r\n",
		},
		{
			name: "connection rate, no hostname, wrapped", err: fmt.Errorf("gateway: %w", &LimitError{Kind: ConnRate, Addr: v6}),
			smtp: "421 4.7.0 Error: too many connections from 2001:db8::7\r\n",
			imap: "* BYE [UNAVAILABLE] Too many connections from 2001:db8::7\r\n",
			pop3: "-ERR [SYS/TEMP] Too many connections from 2001:db8::7\r\n",
		},
		{
			name: "message rate", err: &LimitError{Kind: MessageRate, Addr: a}, host: "mx.example.com",
			smtp: "450 4.7.1 Error: too much mail from 192.0.2.1\r\n",
			imap: "* BYE [UNAVAILABLE] Too much mail from 192.0.2.1\r\n",
			pop3: "-ERR [SYS/TEMP] Too much mail from 192.0.2.1\r\n",
		},
		{
			name: "recipient rate", err: &LimitError{Kind: RecipientRate, Addr: a},
			smtp: "450 4.7.1 Error: too many recipients from 192.0.2.1\r\n",
			imap: "* BYE [UNAVAILABLE] Too many recipients from 192.0.2.1\r\n",
			pop3: "-ERR [SYS/TEMP] Too many recipients from 192.0.2.1\r\n",
		},
		{
			name: "denied", err: &LimitError{Kind: Denied, Addr: a}, host: "mx.example.com",
			smtp: "554 5.7.1 mx.example.com Error: access denied for 192.0.2.1\r\n",
			imap: "* BYE Access denied for 192.0.2.1\r\n",
			pop3: "-ERR [SYS/PERM] Access denied for 192.0.2.1\r\n",
		},
		{
			name: "denied without an address", err: &LimitError{Kind: Denied},
			smtp: "554 5.7.1 Error: access denied for unknown\r\n",
			imap: "* BYE Access denied for unknown\r\n",
			pop3: "-ERR [SYS/PERM] Access denied for unknown\r\n",
		},
		{
			name: "capacity", err: &LimitError{Kind: Capacity, Addr: a}, host: "mx.example.com",
			smtp: "421 4.3.2 mx.example.com Error: too many clients, try again later\r\n",
			imap: "* BYE [UNAVAILABLE] Too many clients, try again later\r\n",
			pop3: "-ERR [SYS/TEMP] Too many clients, try again later\r\n",
		},
		{
			name: "auth rate", err: &LimitError{Kind: AuthRate, Addr: a, User: "alice"}, host: "mx.example.com",
			smtp: "450 4.7.1 Error: too many AUTH commands from 192.0.2.1\r\n",
			imap: "* BYE [UNAVAILABLE] Too many logins from 192.0.2.1\r\n",
			pop3: "-ERR [SYS/TEMP] Too many logins from 192.0.2.1\r\n",
		},
		{
			name: "source lockout", err: &LimitError{Kind: Lockout, Addr: v6, User: "alice"}, host: "mx.example.com",
			smtp: "454 4.7.0 Error: too many failed logins from 2001:db8::7, try again later\r\n",
			imap: "* BYE [UNAVAILABLE] Too many failed logins from 2001:db8::7, try again later\r\n",
			pop3: "-ERR [SYS/TEMP] Too many failed logins from 2001:db8::7, try again later\r\n",
		},
		{
			name: "user lockout never shows the user name", err: &LimitError{Kind: UserLockout, Addr: a, User: "evil\r\n250 OK"}, host: "mx.example.com",
			smtp: "454 4.7.0 Error: too many failed logins, try again later\r\n",
			imap: "* BYE [UNAVAILABLE] Too many failed logins, try again later\r\n",
			pop3: "-ERR [SYS/TEMP] Too many failed logins, try again later\r\n",
		},
		{
			name: "other error", err: errors.New("redis: connection refused"), host: "mx.example.com",
			smtp: "421 4.3.0 mx.example.com Error: temporary failure, try again later\r\n",
			imap: "* BYE [UNAVAILABLE] Temporary failure, try again later\r\n",
			pop3: "-ERR [SYS/TEMP] Temporary failure, try again later\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.smtp, SMTPReply(tt.err, tt.host))
			assert.Equal(t, tt.imap, IMAPReply(tt.err))
			assert.Equal(t, tt.pop3, POP3Reply(tt.err))
			// IMAPText is IMAPReply's text, for a tagged NO.
			if tt.err != nil {
				assert.Equal(t, tt.imap, "* BYE "+IMAPText(tt.err)+"\r\n")
			} else {
				assert.Empty(t, IMAPText(nil))
			}
		})
	}
}
