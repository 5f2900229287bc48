package mailwire_test

import (
	"fmt"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// ExampleParseLiteral shows which line endings announce an IMAP literal.
func ExampleParseLiteral() {
	for _, line := range []string{
		"A1 LOGIN {5}\r\n",
		"A2 APPEND INBOX ~{12+}\r\n",
		"A3 LOGIN {9223372036854775808}\r\n", // more than 2^63-1
		"A4 NOOP {5} \r\n",
	} {
		lit, ok := mailwire.ParseLiteral([]byte(line))
		fmt.Printf("%q: %v %+v\n", line, ok, lit)
	}
	// Output:
	// "A1 LOGIN {5}\r\n": true {Size:5 NonSync:false Binary:false}
	// "A2 APPEND INBOX ~{12+}\r\n": true {Size:12 NonSync:true Binary:true}
	// "A3 LOGIN {9223372036854775808}\r\n": false {Size:0 NonSync:false Binary:false}
	// "A4 NOOP {5} \r\n": false {Size:0 NonSync:false Binary:false}
}

// ExampleReply_DropExtension removes STARTTLS from an EHLO reply once the
// client's TLS is done.
func ExampleReply_DropExtension() {
	raw := "250-mail.example.org\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
	r, err := mailwire.ParseReply([]byte(raw), 100)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Keywords())
	fmt.Printf("%q\n", r.DropExtension("STARTTLS"))
	// Output:
	// [PIPELINING STARTTLS 8BITMIME]
	// "250-mail.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
}

// ExampleDropTLSCapabilities edits an IMAP greeting's capability code.
func ExampleDropTLSCapabilities() {
	edited, _ := mailwire.DropTLSCapabilities([]byte("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"))
	fmt.Printf("%q\n", edited)
	// Output:
	// "* OK [CAPABILITY IMAP4rev1] ready\r\n"
}
