package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// Static is an Authenticator over a small users file, in the spirit of
// Dovecot's passwd-file: for a demo, for tests and for small sites. Build
// one with ParseStatic or LoadStatic.
//
// # File format
//
// The file is read line by line. Blank lines are ignored, and so is a line
// whose first non-blank character is '#' (a '#' later in a line is part of
// the field: a password may contain one). A line is at most 64 KiB, and
// may end in CRLF; a UTF-8 byte order mark before the first is skipped. Every
// other line is fields separated by spaces or tabs:
//
//	<user> <password> [key=value | flag ...]
//
// <user> is a user name, or "*@domain" for a domain line (below). A name
// with an '@' is split at its last '@': the local part before it matches
// exactly (case-sensitive), the domain after it case-insensitively, so
// "Alice@Example.COM" is the line "Alice@example.com" but not
// "alice@example.com". A name without '@' matches exactly. A user, and a
// domain, may have one line only.
//
// <password> is one of
//
//	{SCHEME}data    a password in one of Dovecot's schemes
//	"*"             (a star alone) no password is accepted: only EXTERNAL
//	                (a client certificate) logs this user in
//	"-"             (a dash alone) no password of its own: on a user line,
//	                the domain line's password is used (the file must have
//	                a domain line for the user's domain); on a domain line,
//	                the domain's users need lines of their own (the domain
//	                line gives them defaults and routes mail, see below)
//
// The schemes are Dovecot's, with Dovecot's names (case-insensitive) and
// encodings:
//
//	{PLAIN}secret   the password itself (CLEARTEXT is the same scheme)
//	{SHA256}data    SHA-256 of the password
//	{SHA512}data    SHA-512 of the password
//	{SSHA256}data   SHA-256 of the password followed by a salt, then the
//	                salt: data = base64(sha256(password+salt) + salt)
//	{SSHA512}data   the same with SHA-512
//
// The data of the hashed schemes is base64 (padded or not), or hex when
// it is exactly twice the digest's length for SHA256 and SHA512, as Dovecot
// guesses. A ".HEX", ".B64" or ".BASE64" suffix on the scheme name
// ({SSHA256.HEX}, {PLAIN.B64}) names the encoding instead; {PLAIN.HEX} and
// {PLAIN.B64} carry a password with a space or a tab in it. doveadm pw -s
// SSHA512 prints a usable field. Other schemes (CRYPT, BLF-CRYPT, ARGON2,
// SHA1, MD5 ...) are not supported. An empty password is an error.
//
// The keys and flags after the password set the Result of a login:
//
//	pool=NAME       Result.Pool: a backend the listener knows by name
//	host=HOST:PORT  Result.Backend: a copy of the Dialer field with Addr set
//	                to HOST:PORT and Protocol to the request's (see Dialer);
//	                an IPv6 address is in brackets: host=[2001:db8::1]:143
//	user=NAME       Result.User: the name to log in with at the backend
//	authz=NAME      Result.AuthzID: the SASL authorization identity at the
//	                backend (a Dovecot master user's target mailbox)
//	pass=SECRET     Result.Password: the password for the backend, in the
//	                clear
//	nologin         Result.NoLogin: send no credentials to the backend
//	                (SMTP with XCLIENT LOGIN=; IMAP and POP3 refuse it)
//
// In user= and authz= the client's name can be used: %u is the whole name,
// %n its local part, %d its domain (lowercased), %% a '%'. pool= and host=
// are exclusive on a line. A value is one field: it cannot contain a space
// or a tab. Each key may appear once on a line.
//
// # Domain lines
//
// A line whose user is "*@domain" is a domain line. It applies to the
// users of that domain:
//
//   - A user of the domain with no line of its own is logged in with the
//     domain line's password, unless that is "-": then such a user is
//     unknown. Its Result comes from the domain line's keys.
//   - A user of the domain with a line of its own is logged in with that
//     line's password ("-" takes the domain line's). Its keys override the
//     domain line's one by one, except that pool= or host= on the user line
//     replaces the domain line's routing as a whole; a nologin on either
//     line applies.
//
// So "users of example.com go to backend A, users of example.net to
// backend B" is
//
//	*@example.com -  host=imap-a.internal:143
//	*@example.net -  host=imap-b.internal:143
//	alice@example.com {SSHA256}...
//	bob@example.net   {SSHA512}...
//
// and a demo where anybody at either domain logs in with "demo" writes
// {PLAIN}demo for "-" on the domain lines.
//
// # Mechanisms
//
// PLAIN and LOGIN compare the client's password with the line's in
// constant time (crypto/subtle, over digests of equal length, never over
// the raw passwords), and compare with a dummy digest for an unknown user
// or a "*" password, so that those cost about what a wrong password does.
// EXTERNAL allows a user that exists (a line of its own, whatever its password, or a
// domain line whose password is not "-") when Request.ClientCert is not
// nil; the identity is Request.User. A request whose AuthzID differs from
// its User is refused: a users file says nothing about who may act for
// whom.
//
// NONE (an SMTP session without AUTH, decided at its first RCPT TO) routes
// by the recipient: a recipient with a line of its own, or whose domain
// has a domain line (whatever its password), is allowed with that line's
// pool= or host= (the other keys are for logins and are left out). Any
// other recipient is refused with Postfix's words for a domain it does not
// serve: Message "<rcpt>: Relay access denied", SMTPCode "554 5.7.1".
//
// An unknown user, a wrong password and a user whose password is "*" are
// refused alike, with the zero Result (the protocol's usual words), so the
// client never learns which was wrong. Other mechanisms are refused the
// same way. Authenticate never returns an error.
//
// # Concurrency and reloading
//
// A Static does not change once parsed, and is safe for concurrent use.
// There is no global state and no file watching: to reload, load a new
// Static and swap it in, for example
//
//	var cur atomic.Pointer[auth.Static]
//	cur.Store(first)
//	authn := auth.AuthenticatorFunc(func(ctx context.Context, r *auth.Request) (*auth.Result, error) {
//		return cur.Load().Authenticate(ctx, r)
//	})
//	// on SIGHUP: if s, err := auth.LoadStatic(path); err == nil { s.Dialer = tmpl; cur.Store(s) }
//
// Sessions already logged in keep the backend they were given.
type Static struct {
	// Dialer is the template for host= lines: a login routed by host= gets
	// a copy of it with Addr set to the line's HOST:PORT and Protocol to
	// the request's. XCLIENT is kept for SMTP only and IMAPID for IMAP
	// only, so one template serves every protocol. Leave
	// TLSConfig.ServerName empty so that each copy verifies its own host.
	// If nil, the zero Dialer: a plain connection without PROXY header. Set
	// it before the first Authenticate and do not change it afterwards.
	Dialer *backend.Dialer

	users   map[string]*staticEntry // "local@domain" (domain lowercased), or a name without '@'
	domains map[string]*staticEntry // lowercased domain of a "*@domain" line
}

// ParseStatic reads a users file (see Static for its format). An error
// names the line, and never contains a password, a hash or any other text
// of the file.
func ParseStatic(r io.Reader) (*Static, error) {
	return parseStatic(r, "")
}

// LoadStatic reads the users file at path with ParseStatic; its errors
// name the file and the line.
func LoadStatic(path string) (*Static, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	defer f.Close()
	return parseStatic(f, path)
}

// String describes the Static without its contents, so that printing one
// shows no hash or password.
func (s *Static) String() string {
	if s == nil {
		return "auth.Static(nil)"
	}
	return fmt.Sprintf("auth.Static(%d users, %d domains)", len(s.users), len(s.domains))
}

// GoString is String, for %#v.
func (s *Static) GoString() string { return s.String() }

// Authenticate decides req as the doc comment of Static describes. It never
// returns an error.
func (s *Static) Authenticate(_ context.Context, req *Request) (*Result, error) {
	switch req.Mechanism {
	case Plain, Login:
		return s.password(req), nil
	case External:
		return s.external(req), nil
	case None:
		return s.relay(req), nil
	}
	return &Result{}, nil
}

// password decides a PLAIN or LOGIN request. The digest is computed and
// compared whatever is wrong with the request, so that an unknown user
// costs what a wrong password does.
func (s *Static) password(req *Request) *Result {
	e := s.lookup(req.User)
	pw := &staticDummyPassword
	if e != nil && e.pw.kind == staticHashed {
		pw = &e.pw
	}
	match := pw.verify(string(req.Password))
	if e == nil || e.pw.kind != staticHashed || !match ||
		req.Password == "" || !staticSameAuthz(req) {
		return &Result{}
	}
	return e.result(req, s.Dialer)
}

// external decides an EXTERNAL request: a verified certificate and a user
// the file knows.
func (s *Static) external(req *Request) *Result {
	if req.ClientCert == nil || !staticSameAuthz(req) {
		return &Result{}
	}
	e := s.lookup(req.User)
	if e == nil {
		return &Result{}
	}
	return e.result(req, s.Dialer)
}

// relay decides a NONE request by its recipient.
func (s *Static) relay(req *Request) *Result {
	if req.Protocol == starttls.SMTP && req.User == "" && req.RcptTo != "" {
		e := s.route(req.RcptTo)
		if e != nil {
			res := &Result{OK: true, Pool: e.pool}
			if e.host != "" {
				res.Backend = staticDialer(s.Dialer, e.host, req.Protocol)
			}
			return res
		}
	}
	msg := "Relay access denied"
	if req.RcptTo != "" {
		msg = "<" + req.RcptTo + ">: " + msg
	}
	return &Result{Message: msg, SMTPCode: "554 5.7.1"}
}

// staticSameAuthz reports whether the request asks to act as nobody but
// itself.
func staticSameAuthz(req *Request) bool {
	return req.AuthzID == "" || req.AuthzID == req.User
}

// lookup returns the entry a login as name uses: its own line (merged with
// its domain's at parse time), or its domain's line if that has a password
// other than "-". It returns nil for an unknown user.
func (s *Static) lookup(name string) *staticEntry {
	if e, ok := s.users[staticKey(name)]; ok {
		return e
	}
	local, domain, ok := staticSplit(name)
	if !ok || !staticDomainUser(local) {
		return nil
	}
	if e, ok := s.domains[domain]; ok && e.pw.kind != staticInherit {
		return e
	}
	return nil
}

// route returns the entry a recipient is routed by: its own line or its
// domain's, whatever their passwords.
func (s *Static) route(rcpt string) *staticEntry {
	if e, ok := s.users[staticKey(rcpt)]; ok {
		return e
	}
	if _, domain, ok := staticSplit(rcpt); ok {
		return s.domains[domain]
	}
	return nil
}

// staticSplit splits name at its last '@' and lowercases the domain. ok is
// false without an '@' or with an empty domain.
func staticSplit(name string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(name, '@')
	if i < 0 || i == len(name)-1 {
		return "", "", false
	}
	return name[:i], strings.ToLower(name[i+1:]), true
}

// staticKey is the map key of a user name: the domain lowercased, the
// local part as it is.
func staticKey(name string) string {
	local, domain, ok := staticSplit(name)
	if !ok {
		return name
	}
	return local + "@" + domain
}

// staticDomainUser reports whether a local part may be logged in by a
// domain line: not empty, and no blank, control character or '@' in it (a
// name the backend might read otherwise than the file does).
func staticDomainUser(local string) bool {
	if local == "" {
		return false
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c <= ' ' || c == 0x7f || c == '@' {
			return false
		}
	}
	return true
}

// staticDialer copies tmpl for addr and p, keeping XCLIENT for SMTP and
// IMAPID for IMAP only.
func staticDialer(tmpl *backend.Dialer, addr string, p starttls.Protocol) *backend.Dialer {
	var d backend.Dialer
	if tmpl != nil {
		d = *tmpl
	}
	d.Addr = addr
	d.Protocol = p
	if p != starttls.SMTP {
		d.XCLIENT = false
	}
	if p != starttls.IMAP {
		d.IMAPID = false
	}
	return &d
}

// staticEntry is one line of the file; a user line's entry is merged with
// its domain line's once the file is read.
type staticEntry struct {
	line    int
	pw      staticPassword
	pool    string
	host    string
	user    string
	authz   string
	pass    Secret
	nologin bool
}

// result is the allowed Result of a login as req.User with e.
func (e *staticEntry) result(req *Request, tmpl *backend.Dialer) *Result {
	res := &Result{
		OK:       true,
		Pool:     e.pool,
		User:     staticExpand(e.user, req.User),
		AuthzID:  staticExpand(e.authz, req.User),
		Password: e.pass,
		NoLogin:  e.nologin,
	}
	if e.host != "" {
		res.Backend = staticDialer(tmpl, e.host, req.Protocol)
	}
	return res
}

// staticExpand replaces %u, %n, %d and %% in v with name, its local part,
// its lowercased domain and '%'. Other sequences were refused at parse
// time.
func staticExpand(v, name string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	local, domain := name, ""
	if l, d, ok := staticSplit(name); ok {
		local, domain = l, d
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		i++
		switch v[i] {
		case 'u':
			b.WriteString(name)
		case 'n':
			b.WriteString(local)
		case 'd':
			b.WriteString(domain)
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

// The kinds of a password field.
const (
	staticNone    = iota // "*"
	staticInherit        // "-"
	staticHashed         // {SCHEME}data
)

// staticPassword is a password field. A hashed one holds the digest the
// client's password must produce: hash(password + salt). {PLAIN} is kept
// as its SHA-256, so that every comparison is between digests of one
// length and the file's passwords are not kept in memory.
type staticPassword struct {
	kind   int
	hash   func() hash.Hash
	digest []byte
	salt   []byte
}

// verify reports in constant time whether password produces p's digest.
func (p *staticPassword) verify(password string) bool {
	h := p.hash()
	io.WriteString(h, password)
	h.Write(p.salt)
	return subtle.ConstantTimeCompare(h.Sum(nil), p.digest) == 1
}

// staticDummyPassword is compared with when there is no password to
// compare with, so that the work done does not tell.
var staticDummyPassword = staticPassword{
	kind:   staticHashed,
	hash:   sha256.New,
	digest: make([]byte, sha256.Size), // no known preimage
}

// staticScheme is a Dovecot password scheme.
type staticScheme struct {
	hash   func() hash.Hash
	size   int  // digest length; 0 for PLAIN
	salted bool // data is digest + salt
}

var staticSchemes = map[string]staticScheme{
	"PLAIN":     {},
	"CLEARTEXT": {},
	"SHA256":    {hash: sha256.New, size: sha256.Size},
	"SHA512":    {hash: sha512.New, size: sha512.Size},
	"SSHA256":   {hash: sha256.New, size: sha256.Size, salted: true},
	"SSHA512":   {hash: sha512.New, size: sha512.Size, salted: true},
}

// The encodings of a scheme's data.
const (
	staticEncGuess = iota // no suffix: Dovecot's default and guess
	staticEncHex
	staticEncBase64
)

// parseStaticPassword parses a password field.
func parseStaticPassword(f string) (staticPassword, staticReason) {
	switch f {
	case "*":
		return staticPassword{kind: staticNone}, reasonOK
	case "-":
		return staticPassword{kind: staticInherit}, reasonOK
	}
	if !strings.HasPrefix(f, "{") {
		return staticPassword{}, reasonPasswordForm
	}
	end := strings.IndexByte(f, '}')
	if end < 0 {
		return staticPassword{}, reasonPasswordForm
	}
	name, data := strings.ToUpper(f[1:end]), f[end+1:]
	enc := staticEncGuess
	if dot := strings.IndexByte(name, '.'); dot >= 0 {
		switch name[dot+1:] {
		case "HEX":
			enc = staticEncHex
		case "B64", "BASE64":
			enc = staticEncBase64
		default:
			return staticPassword{}, reasonEncoding
		}
		name = name[:dot]
	}
	sc, ok := staticSchemes[name]
	if !ok {
		return staticPassword{}, reasonScheme
	}
	if data == "" {
		return staticPassword{}, reasonEmptyPassword
	}

	var raw []byte
	switch {
	case enc == staticEncHex:
		raw, ok = staticHex(data)
	case enc == staticEncBase64:
		raw, ok = staticBase64(data)
	case sc.size == 0: // {PLAIN}: the password as it is
		raw, ok = []byte(data), true
	case !sc.salted && len(data) == 2*sc.size:
		// Dovecot's guess: hex if the length fits, else base64.
		if raw, ok = staticHex(data); !ok {
			raw, ok = staticBase64(data)
		}
	default:
		raw, ok = staticBase64(data)
	}
	if !ok {
		return staticPassword{}, reasonEncodingData
	}

	switch {
	case sc.size == 0:
		if len(raw) == 0 {
			return staticPassword{}, reasonEmptyPassword
		}
		d := sha256.Sum256(raw)
		return staticPassword{kind: staticHashed, hash: sha256.New, digest: d[:]}, reasonOK
	case sc.salted && len(raw) <= sc.size:
		return staticPassword{}, reasonLength
	case !sc.salted && len(raw) != sc.size:
		return staticPassword{}, reasonLength
	}
	return staticPassword{
		kind:   staticHashed,
		hash:   sc.hash,
		digest: raw[:sc.size:sc.size],
		salt:   raw[sc.size:],
	}, reasonOK
}

func staticHex(s string) ([]byte, bool) {
	b, err := hex.DecodeString(s)
	return b, err == nil
}

func staticBase64(s string) ([]byte, bool) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, true
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	return b, err == nil
}

// staticReason is why a line was refused. The error text is one of a fixed
// set of sentences, so that no text of the file (a password) can reach an
// error.
type staticReason int

const (
	reasonOK staticReason = iota
	reasonTooLong
	reasonNoPassword
	reasonPasswordForm
	reasonScheme
	reasonEncoding
	reasonEncodingData
	reasonLength
	reasonEmptyPassword
	reasonUser
	reasonDomainLine
	reasonDuplicateUser
	reasonDuplicateDomain
	reasonUnknownKey
	reasonDuplicateKey
	reasonEmptyValue
	reasonFlagValue
	reasonHost
	reasonPoolAndHost
	reasonPercent
	reasonInheritNoDomain
	reasonRead
	reasonCount // the number of reasons
)

var staticReasons = [reasonCount]string{
	reasonOK:              "no error",
	reasonTooLong:         "line longer than 64 KiB",
	reasonNoPassword:      "no password field after the user",
	reasonPasswordForm:    "password field is not *, - or {SCHEME}data",
	reasonScheme:          "unknown password scheme (PLAIN, CLEARTEXT, SHA256, SHA512, SSHA256 and SSHA512 are supported)",
	reasonEncoding:        "unknown encoding suffix on the password scheme (.HEX, .B64 or .BASE64)",
	reasonEncodingData:    "password data is not valid in the scheme's encoding",
	reasonLength:          "password hash has the wrong length for its scheme",
	reasonEmptyPassword:   "empty password",
	reasonUser:            "user name is empty or has an empty local part or domain",
	reasonDomainLine:      "a domain line is *@domain, with a domain and no second '@'",
	reasonDuplicateUser:   "the user already has a line",
	reasonDuplicateDomain: "the domain already has a line",
	reasonUnknownKey:      "unknown key (pool=, host=, user=, authz=, pass= and nologin are known)",
	reasonDuplicateKey:    "a key appears twice",
	reasonEmptyValue:      "a key has an empty value",
	reasonFlagValue:       "nologin takes no value",
	reasonHost:            "host= is not HOST:PORT with a port from 1 to 65535",
	reasonPoolAndHost:     "pool= and host= on one line",
	reasonPercent:         "user= or authz= has a % other than %u, %n, %d or %%",
	reasonInheritNoDomain: "password - on a user line needs a *@domain line for the user's domain",
	reasonRead:            "read error",
}

// staticParseError is an error of ParseStatic or LoadStatic. It holds a
// reason code and line numbers only.
type staticParseError struct {
	file   string // "" for ParseStatic
	line   int
	first  int // the earlier line, for a duplicate
	reason staticReason
	err    error // the reader's error, for reasonRead
}

func (e *staticParseError) Error() string {
	var b strings.Builder
	if e.file != "" {
		fmt.Fprintf(&b, "auth: users file %s line %d: ", e.file, e.line)
	} else {
		fmt.Fprintf(&b, "auth: users file line %d: ", e.line)
	}
	b.WriteString(staticReasons[e.reason])
	if e.first > 0 {
		fmt.Fprintf(&b, " (line %d)", e.first)
	}
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(e.err.Error())
	}
	return b.String()
}

func (e *staticParseError) Unwrap() error { return e.err }

// staticMaxLine bounds a line of the users file.
const staticMaxLine = 64 << 10

func parseStatic(r io.Reader, file string) (*Static, error) {
	s := &Static{users: map[string]*staticEntry{}, domains: map[string]*staticEntry{}}
	fail := func(line int, reason staticReason) (*Static, error) {
		return nil, &staticParseError{file: file, line: line, reason: reason}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), staticMaxLine)
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if n == 1 {
			text = strings.TrimPrefix(text, "\ufeff") // a UTF-8 byte order mark
		}
		fields := staticFields(text)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		name := fields[0]
		if len(fields) < 2 {
			return fail(n, reasonNoPassword)
		}
		pw, reason := parseStaticPassword(fields[1])
		if reason != reasonOK {
			return fail(n, reason)
		}
		e := &staticEntry{line: n, pw: pw}
		if reason := e.parseKeys(fields[2:]); reason != reasonOK {
			return fail(n, reason)
		}

		if rest, ok := strings.CutPrefix(name, "*@"); ok {
			if rest == "" || strings.IndexByte(rest, '@') >= 0 {
				return fail(n, reasonDomainLine)
			}
			domain := strings.ToLower(rest)
			if prev, dup := s.domains[domain]; dup {
				return nil, &staticParseError{file: file, line: n, first: prev.line, reason: reasonDuplicateDomain}
			}
			s.domains[domain] = e
			continue
		}
		if name == "*" {
			return fail(n, reasonDomainLine)
		}
		if i := strings.LastIndexByte(name, '@'); i == 0 || i == len(name)-1 {
			return fail(n, reasonUser)
		}
		key := staticKey(name)
		if prev, dup := s.users[key]; dup {
			return nil, &staticParseError{file: file, line: n, first: prev.line, reason: reasonDuplicateUser}
		}
		s.users[key] = e
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fail(n+1, reasonTooLong)
		}
		return nil, &staticParseError{file: file, line: n + 1, reason: reasonRead, err: err}
	}

	// Merge each user line with its domain line, now that all are read.
	for key, e := range s.users {
		var d *staticEntry
		if _, domain, ok := staticSplit(key); ok {
			d = s.domains[domain]
		}
		if d == nil {
			if e.pw.kind == staticInherit {
				return fail(e.line, reasonInheritNoDomain)
			}
			continue
		}
		s.users[key] = e.merge(d)
	}
	return s, nil
}

// staticFields splits a line at spaces and tabs only: any other byte may be
// part of a password.
func staticFields(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
}

// parseKeys sets e's keys from the fields after the password.
func (e *staticEntry) parseKeys(fields []string) staticReason {
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, hasValue := strings.Cut(f, "=")
		if seen[k] {
			return reasonDuplicateKey
		}
		seen[k] = true
		if k == "nologin" {
			if hasValue {
				return reasonFlagValue
			}
			e.nologin = true
			continue
		}
		switch k {
		case "pool", "host", "user", "authz", "pass":
		default:
			return reasonUnknownKey
		}
		if v == "" {
			return reasonEmptyValue
		}
		switch k {
		case "pool":
			e.pool = v
		case "host":
			if !staticHostPort(v) {
				return reasonHost
			}
			e.host = v
		case "user":
			if !staticPercentOK(v) {
				return reasonPercent
			}
			e.user = v
		case "authz":
			if !staticPercentOK(v) {
				return reasonPercent
			}
			e.authz = v
		case "pass":
			e.pass = Secret(v)
		}
	}
	if e.pool != "" && e.host != "" {
		return reasonPoolAndHost
	}
	return reasonOK
}

// staticHostPort reports whether v is HOST:PORT with a host and a port
// from 1 to 65535.
func staticHostPort(v string) bool {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return err == nil && p > 0
}

// staticPercentOK reports whether every '%' in v starts %u, %n, %d or %%.
func staticPercentOK(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			continue
		}
		if i+1 == len(v) || !strings.ContainsRune("und%", rune(v[i+1])) {
			return false
		}
		i++
	}
	return true
}

// merge returns user line e completed by its domain line d: the password
// if e's is "-", and each key e does not set (pool= and host= as one).
func (e *staticEntry) merge(d *staticEntry) *staticEntry {
	m := *e
	if m.pw.kind == staticInherit {
		m.pw = d.pw
		if m.pw.kind == staticInherit { // "-" on both: no password
			m.pw = staticPassword{kind: staticNone}
		}
	}
	if m.pool == "" && m.host == "" {
		m.pool, m.host = d.pool, d.host
	}
	if m.user == "" {
		m.user = d.user
	}
	if m.authz == "" {
		m.authz = d.authz
	}
	if m.pass == "" {
		m.pass = d.pass
	}
	m.nologin = m.nologin || d.nologin
	return &m
}
