package authhttp

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/starttls"
)

// rawServer is an auth service written as nginx-tests writes them: it
// reads one request head, hands its text to answer, writes what answer
// returns and closes the connection. The request heads are sent on the
// returned channel, one per connection.
func rawServer(t *testing.T, answer func(head string) string) (url string, heads <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				select {
				case ch <- head.String():
				default:
				}
				_, _ = conn.Write([]byte(answer(head.String())))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/mail/auth", ch
}

// nginxTestsAuth answers as the auth location of nginx-tests' mail_smtp.t
// and mail_imap.t: OK for test@example.com with password "secret" (or any
// login for a recipient at example.com), "ERROR" otherwise, always with
// Auth-Server, Auth-Port and "Auth-Wait: 1", and an HTTP status of 204.
func nginxTestsAuth(w http.ResponseWriter, r *http.Request) {
	reply := "ERROR"
	if strings.Contains(r.Header.Get("Auth-Smtp-To"), "example.com") {
		reply = "OK"
	}
	if r.Header.Get("Auth-User")+":"+r.Header.Get("Auth-Pass") == "test@example.com:secret" {
		reply = "OK"
	}
	if r.Header.Get("Auth-Method")+":"+r.Header.Get("Auth-User")+":"+r.Header.Get("Auth-Pass") == "external:test@example.com:" {
		reply = "OK"
	}
	w.Header().Set("Auth-Status", reply)
	w.Header().Set("Auth-Server", "127.0.0.1")
	w.Header().Set("Auth-Port", "8026")
	w.Header().Set("Auth-Wait", "1")
	w.WriteHeader(http.StatusNoContent)
}

// countingServer is an httptest server that counts the TCP connections
// made to it.
type countingServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newCountingServer(t *testing.T, h http.Handler) *countingServer {
	t.Helper()
	s := &countingServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// newClient returns a Client of url whose idle connections are closed when
// the test ends (before the servers registered earlier are closed).
func newClient(t *testing.T, url string) *Client {
	c := &Client{URL: url}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func imapLogin(user, pass string) *auth.Request {
	return &auth.Request{
		Protocol:  starttls.IMAP,
		Mechanism: auth.Plain,
		User:      user,
		Password:  auth.Secret(pass),
		Attempt:   1,
		Client:    &net.TCPAddr{IP: net.IPv4(192, 0, 2, 42), Port: 50000},
		Local:     &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 143},
	}
}
