package monitor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/starttls"
)

// pool is a tiny stand-in for a backend pool: member name to state.
type pool struct {
	mu      sync.Mutex
	members map[string]string
	changed chan struct{}
}

func (p *pool) onChange(st monitor.Status) {
	state := "up"
	if !st.Up {
		state = "down"
		if errors.Is(st.Last.Err, monitor.ErrConnect) {
			state += " (connect failed)"
		}
	}
	p.mu.Lock()
	p.members[st.Name] = state
	p.mu.Unlock()
	p.changed <- struct{}{}
}

// greetingServer answers every connection with an SMTP greeting.
func greetingServer() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.WriteString(c, "220 mx1.example.com ESMTP\r\n")
				_, _ = io.Copy(io.Discard, c) // until the probe hangs up
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close(); wg.Wait() }
}

// Health-check a pool of two backends: a live SMTP server and a closed port.
// Each Checker feeds the pool through OnChange; the first result decides
// each member's state.
func Example() {
	live, stop := greetingServer()
	defer stop()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()

	p := &pool{members: map[string]string{}, changed: make(chan struct{}, 2)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for name, addr := range map[string]string{"mx1": live, "mx2": dead} {
		c := &monitor.Checker{
			Name:     name,
			Addr:     addr,
			Probe:    monitor.Greeting{Protocol: starttls.SMTP},
			Interval: 50 * time.Millisecond,
			OnChange: p.onChange,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Run(ctx)
		}()
	}
	<-p.changed
	<-p.changed
	cancel()
	wg.Wait()

	names := make([]string, 0, len(p.members))
	for n := range p.members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%s: %s\n", n, p.members[n])
	}
	// Output:
	// mx1: up
	// mx2: down (connect failed)
}

// Probe a submission server the way a move of TLS to a balancer is validated:
// STARTTLS, then AUTH PLAIN. A failure says exactly which step broke.
func ExampleSMTP() {
	probe := monitor.SMTP{
		Security: starttls.STARTTLS,
		Hostname: "edge.example.com",
		Username: "probe@example.com",
		Password: "secret",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := probe.Probe(ctx, "127.0.0.1:1") // nothing listens there
	fmt.Println(r.OK, errors.Is(r.Err, monitor.ErrConnect))
	// Output: false true
}
