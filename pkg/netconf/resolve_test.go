package netconf

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// dnsServer answers A and AAAA queries on a loopback UDP socket from a
// table (name → addresses); any other name gets NXDOMAIN. It records the
// query types it saw.
func dnsServer(t *testing.T, table map[string][]netip.Addr) (addr string, seen chan uint16) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	seen = make(chan uint16, 64)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			// RFC 1035 §4.1: the header, then one question: labels, type, class.
			i := 12
			var labels []string
			for i < len(q) && q[i] != 0 {
				l := int(q[i])
				labels = append(labels, string(q[i+1:i+1+l]))
				i += 1 + l
			}
			qend := i + 5
			qtype := binary.BigEndian.Uint16(q[i+1:])
			seen <- qtype
			name := strings.ToLower(strings.Join(labels, "."))
			var answers [][]byte
			for _, a := range table[name] {
				if (qtype == 1 && a.Is4()) || (qtype == 28 && a.Is6()) {
					answers = append(answers, a.AsSlice())
				}
			}
			resp := append([]byte(nil), q[:qend]...)
			flags := uint16(0x8180) // response, recursion desired and available
			if _, ok := table[name]; !ok {
				flags |= 3 // NXDOMAIN
			}
			binary.BigEndian.PutUint16(resp[2:], flags)
			binary.BigEndian.PutUint16(resp[6:], uint16(len(answers)))
			binary.BigEndian.PutUint16(resp[8:], 0)
			binary.BigEndian.PutUint16(resp[10:], 0)
			for _, rd := range answers {
				rr := []byte{0xc0, 12} // the question's name
				rr = binary.BigEndian.AppendUint16(rr, qtype)
				rr = binary.BigEndian.AppendUint16(rr, 1)
				rr = binary.BigEndian.AppendUint32(rr, 60)
				rr = binary.BigEndian.AppendUint16(rr, uint16(len(rd)))
				resp = append(append(resp, rr...), rd...)
			}
			pc.WriteTo(resp, from)
		}
	}()
	return pc.LocalAddr().String(), seen
}

func TestLookupHost(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")
	srv, seen := dnsServer(t, map[string][]netip.Addr{"target.lab": {v4, v6}, "only6.lab": {v6}})
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		var d net.Dialer
		return d.DialContext(ctx, network, srv) // every "server" is the test's
	}
	lease := []netip.Addr{netip.MustParseAddr("10.1.2.1")}
	got, err := LookupHost(context.Background(), "target.lab", lease, dial)
	if err != nil || len(got) != 2 || !(got[0] == v4 && got[1] == v6 || got[0] == v6 && got[1] == v4) {
		t.Fatalf("LookupHost(target.lab) = %v, %v; want %v and %v", got, err, v4, v6)
	}
	if len(dialed) == 0 || dialed[0] != "10.1.2.1:53" {
		t.Errorf("LookupHost asked %q, want the lease's server 10.1.2.1:53", dialed)
	}
	types := map[uint16]bool{}
	for len(seen) > 0 {
		types[<-seen] = true
	}
	if !types[1] || !types[28] {
		t.Errorf("query types = %v, want A (1) and AAAA (28)", types)
	}
	if a := PickAddr(got, netip.MustParseAddr("10.1.2.100")); a != v4 {
		t.Errorf("PickAddr for an IPv4 NIC = %v, want %v", a, v4)
	}
	if a := PickAddr(got, netip.MustParseAddr("fd00::100")); a != v6 {
		t.Errorf("PickAddr for an IPv6 NIC = %v, want %v", a, v6)
	}

	// A name the server does not know: the error says so, naming the server.
	_, err = LookupHost(context.Background(), "nosuch.lab", lease, dial)
	if !errors.Is(err, ErrNotResolved) || !strings.Contains(err.Error(), "10.1.2.1: no such host") || !strings.Contains(err.Error(), "nosuch.lab") {
		t.Errorf("LookupHost(nosuch.lab) = %v, want ErrNotResolved naming the name and 10.1.2.1: no such host", err)
	}
	// No server at all.
	if _, err := LookupHost(context.Background(), "target.lab", nil, dial); !errors.Is(err, ErrNotResolved) || !strings.Contains(err.Error(), "no DNS server") {
		t.Errorf("LookupHost without servers = %v, want ErrNotResolved: no DNS server", err)
	}
}
