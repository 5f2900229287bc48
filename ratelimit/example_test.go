package ratelimit_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
)

// This is port 25 of Mailu on Kubernetes behind Traefik: Traefik's
// InFlightConn (15 per source) in front of Postfix's anvil (60 connections,
// 100 messages and 300 recipients per 60 s), with the office network
// trusted.
func Example() {
	trusted, err := ratelimit.ParseNetworks("10.0.0.0/8")
	if err != nil {
		panic(err)
	}
	lim := &ratelimit.Limiter{
		Limits: ratelimit.Limits{
			InFlight:      15,
			ConnRate:      60,
			MessageRate:   100,
			RecipientRate: 300,
			Unit:          time.Minute,
		},
		Trusted: trusted,
	}
	client := netip.MustParseAddr("192.0.2.1")
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	// 60 short connections in the first minute are fine...
	for i := range 60 {
		lease, err := lim.AdmitAt(context.Background(), client, start.Add(time.Duration(i)*time.Second))
		if err != nil {
			panic(err)
		}
		lease.ReleaseAt(start.Add(time.Duration(i)*time.Second + 500*time.Millisecond))
	}
	// ...the 61st within the minute is refused in Postfix's words...
	_, err = lim.AdmitAt(context.Background(), client, start.Add(59*time.Second+900*time.Millisecond))
	fmt.Print(strings.TrimSpace(ratelimit.SMTPReply(err, "mx.example.com")), "\n")

	// ...while the trusted network is not limited at all.
	_, err = lim.AdmitAt(context.Background(), netip.MustParseAddr("10.1.2.3"), start.Add(59*time.Second))
	fmt.Println("trusted:", err)

	// A minute after the window opened, the client may connect again.
	lease, err := lim.AdmitAt(context.Background(), client, start.Add(time.Minute+time.Millisecond))
	fmt.Println("next minute:", err)
	lease.Release()

	st := lim.Stats()
	fmt.Println("admitted:", st.Admitted, "refused:", st.Refused[ratelimit.ConnRate], "max rate:", st.MaxConnRate.Value)
	// Output:
	// 421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1
	// trusted: <nil>
	// next minute: <nil>
	// admitted: 61 refused: 1 max rate: 61
}

// ParseACL reads the allow/deny list a gateway takes from a flag; the
// first matching rule decides.
func ExampleParseACL() {
	acl, err := ratelimit.ParseACL("allow 10.0.0.0/8, allow [2001:db8::]/32, deny all")
	if err != nil {
		panic(err)
	}
	lim := &ratelimit.Limiter{ACL: acl}
	for _, s := range []string{"10.0.0.7", "2001:db8::25", "198.51.100.4"} {
		_, err := lim.Admit(context.Background(), netip.MustParseAddr(s))
		fmt.Printf("%-13s %q\n", s, ratelimit.POP3Reply(err))
	}
	fmt.Println(acl)
	// Output:
	// 10.0.0.7      ""
	// 2001:db8::25  ""
	// 198.51.100.4  "-ERR [SYS/PERM] Access denied for 198.51.100.4\r\n"
	// allow 10.0.0.0/8, allow 2001:db8::/32, deny all
}

// An SMTP inspector asks before forwarding MAIL FROM and RCPT TO; a
// refusal is answered to the client and the session stays usable.
func ExampleLimiter_AllowRecipientAt() {
	lim := &ratelimit.Limiter{Limits: ratelimit.Limits{RecipientRate: 2}}
	client := netip.MustParseAddr("2001:db8:1:2::7")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		err := lim.AllowRecipientAt(context.Background(), client, now)
		fmt.Printf("RCPT %d: %q\n", i+1, ratelimit.SMTPReply(err, ""))
	}
	// Output:
	// RCPT 1: ""
	// RCPT 2: ""
	// RCPT 3: "450 4.7.1 Error: too many recipients from 2001:db8:1:2::7\r\n"
}

// A login proxy asks the Limiter before it asks the authenticator, and
// tells it about every password the authenticator refused. After three
// failures the source is locked out for ten minutes, even with the right
// password, and the refusal is answered in the protocol's words: here a
// tagged IMAP NO; SMTPReply and POP3Reply answer AUTH and PASS. A server
// calls AllowLogin and LoginFailed; the At variants keep this example's
// clock fixed.
func ExampleLimiter_AllowLoginAt() {
	lim := &ratelimit.Limiter{Limits: ratelimit.Limits{
		AuthRate:          10, // per minute
		LoginFailures:     3,  // per source
		UserLoginFailures: 10, // per user name, from any source
		Lockout:           10 * time.Minute,
	}}
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.1")
	authenticate := func(user, pass string) bool { return user == "alice" && pass == "correct horse" }

	login := func(now time.Time, tag, user, pass string) {
		if err := lim.AllowLoginAt(ctx, client, user, now); err != nil {
			fmt.Println(tag, "NO", ratelimit.IMAPText(err))
			return
		}
		if !authenticate(user, pass) {
			if err := lim.LoginFailedAt(ctx, client, user, now); err != nil {
				fmt.Println("log:", err) // a failing Store; the login is refused anyway
			}
			fmt.Println(tag, "NO [AUTHENTICATIONFAILED] Authentication failed")
			return
		}
		fmt.Println(tag, "OK Logged in")
	}
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	login(start, "a1", "Alice", "123456")
	login(start.Add(time.Second), "a2", "alice", "password")
	login(start.Add(2*time.Second), "a3", "alice", "qwerty")
	login(start.Add(3*time.Second), "a4", "alice", "correct horse")
	login(start.Add(10*time.Minute+time.Second), "a5", "alice", "correct horse")

	st := lim.Stats()
	fmt.Println("failures:", st.LoginFailures, "locked out:", st.Refused[ratelimit.Lockout])
	// Output:
	// a1 NO [AUTHENTICATIONFAILED] Authentication failed
	// a2 NO [AUTHENTICATIONFAILED] Authentication failed
	// a3 NO [AUTHENTICATIONFAILED] Authentication failed
	// a4 NO [UNAVAILABLE] Too many failed logins from 192.0.2.1, try again later
	// a5 OK Logged in
	// failures: 3 locked out: 1
}
