package acmetest

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// startSOAServer serves DNS on a loopback UDP port for DNS-01 clients:
// it answers SOA queries itself, the zone being a name's last two labels
// (pebble-challtestsrv answers SOA with NOTIMP, and certmagic looks up the
// zone of _acme-challenge.<name> before it asks the provider), and passes
// every other query to pebble-challtestsrv. It stops when the test ends.
func (p *Pebble) startSOAServer(t testing.TB) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(p.answerDNS)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	p.ResolverAddr = pc.LocalAddr().String()
}

func (p *Pebble) answerDNS(w dns.ResponseWriter, req *dns.Msg) {
	defer w.Close()
	if len(req.Question) == 1 && req.Question[0].Qtype == dns.TypeSOA {
		q := req.Question[0]
		labels := dns.SplitDomainName(q.Name)
		zone := dns.Fqdn(strings.Join(labels[max(0, len(labels)-2):], "."))
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		m.Answer = []dns.RR{&dns.SOA{
			Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60,
		}}
		_ = w.WriteMsg(m)
		return
	}
	c := &dns.Client{Net: "udp"}
	resp, _, err := c.Exchange(req, p.DNSAddr)
	if err != nil {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
		return
	}
	_ = w.WriteMsg(resp)
}
