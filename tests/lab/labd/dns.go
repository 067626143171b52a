package main

// Resolvers that do not behave like dnsmasq: -serve name,ip:53,dns:MODE listens
// on UDP and TCP port 53 of ip and answers for the lab's names (the name → IPv4
// map labd builds from every -serve). Messages are parsed and built by hand (no
// DNS library in GOPATH); only what a stub resolver sends is understood: one
// question, no compression in it. MODE:
//
//	refuse-aaaa  A → the address (NXDOMAIN for names the lab does not have);
//	             AAAA → REFUSED, for every name. Other types → NOERROR, no answer.
//	empty-aaaa   A as above; AAAA → NOERROR with no answer (NODATA) for the
//	             lab's names, NXDOMAIN for the others.
//	silent       reads queries and never answers (UDP: dropped; TCP: accepted,
//	             read, never answered): a dead resolver, the client times out.
//
// Answers carry AA and RA: Go's resolver takes a NOERROR answer with neither
// and no records for a lame referral and asks the next server. Each query is
// logged to labd's output (lab-labd.out in the lab's directory).

import (
	"encoding/binary"
	"io"
	"log"
	"net"
	"strings"
	"time"
)

const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
	dnsClassIN  = 1

	rcodeNoError  = 0
	rcodeFormErr  = 1
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5

	// The TTL of A answers.
	dnsTTL = 60
)

type dnsServer struct {
	mode  string            // refuse-aaaa, empty-aaaa or silent
	hosts map[string]string // lower-case name → IPv4 address
}

// serveDNS starts the resolver on addr (UDP and TCP).
func serveDNS(addr, mode string, hosts map[string]string) {
	switch mode {
	case "refuse-aaaa", "empty-aaaa", "silent":
	default:
		log.Fatalf("unknown DNS behaviour dns:%s", mode)
	}
	d := &dnsServer{mode: mode, hosts: map[string]string{}}
	for name, ip := range hosts {
		d.hosts[strings.ToLower(name)] = ip
	}
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				log.Fatal(err)
			}
			if answer := d.answer(buf[:n], addr+"/udp"); answer != nil {
				udp.WriteTo(answer, from)
			}
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				log.Fatal(err)
			}
			go d.serveTCP(c, addr+"/tcp")
		}
	}()
}

// serveTCP answers the length-prefixed messages of one connection until the
// client closes it or is idle for 30 s.
func (d *dnsServer) serveTCP(c net.Conn, where string) {
	defer c.Close()
	for {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		var length [2]byte
		if _, err := io.ReadFull(c, length[:]); err != nil {
			return
		}
		query := make([]byte, binary.BigEndian.Uint16(length[:]))
		if _, err := io.ReadFull(c, query); err != nil {
			return
		}
		answer := d.answer(query, where)
		if answer == nil {
			continue
		}
		out := make([]byte, 2, 2+len(answer))
		binary.BigEndian.PutUint16(out, uint16(len(answer)))
		if _, err := c.Write(append(out, answer...)); err != nil {
			return
		}
	}
}

// answer builds the response to one query, or nil to send none.
func (d *dnsServer) answer(query []byte, where string) []byte {
	if len(query) < 12 {
		return nil
	}
	flags := binary.BigEndian.Uint16(query[2:4])
	if flags&0x8000 != 0 { // a response, not a query
		return nil
	}
	name, qtype, qclass, end, ok := parseQuestion(query)
	if d.mode == "silent" {
		log.Printf("dns %s: %s type %d: not answered (silent)", where, name, qtype)
		return nil
	}
	opcode := flags >> 11 & 0xF
	var rcode uint16
	var ip net.IP
	switch {
	case !ok:
		rcode = rcodeFormErr
	case opcode != 0:
		rcode = rcodeNotImp
	case qclass != dnsClassIN:
		rcode = rcodeRefused
	case qtype == dnsTypeAAAA && d.mode == "refuse-aaaa":
		rcode = rcodeRefused
	default:
		address, known := d.hosts[name]
		switch {
		case !known:
			rcode = rcodeNXDomain
		case qtype == dnsTypeA:
			ip = net.ParseIP(address).To4()
		}
	}
	// Header: the query's ID; QR, the query's opcode, AA, the query's RD, RA.
	resp := make([]byte, 12, 512)
	copy(resp[0:2], query[0:2])
	binary.BigEndian.PutUint16(resp[2:4], 0x8000|opcode<<11|0x0400|flags&0x0100|0x0080|rcode)
	if ok {
		binary.BigEndian.PutUint16(resp[4:6], 1) // QDCOUNT: the question, as asked
		resp = append(resp, query[12:end]...)
	}
	if ip != nil {
		binary.BigEndian.PutUint16(resp[6:8], 1) // ANCOUNT
		resp = append(resp, 0xC0, 12)            // the name: a pointer to the question's
		resp = binary.BigEndian.AppendUint16(resp, dnsTypeA)
		resp = binary.BigEndian.AppendUint16(resp, dnsClassIN)
		resp = binary.BigEndian.AppendUint32(resp, dnsTTL)
		resp = binary.BigEndian.AppendUint16(resp, 4)
		resp = append(resp, ip...)
	}
	log.Printf("dns %s: %s type %d: rcode %d, %d answer(s)", where, name, qtype, rcode, binary.BigEndian.Uint16(resp[6:8]))
	return resp
}

// parseQuestion reads the one question of a query: its name (lower case, no
// trailing dot), type and class, and where the question ends.
func parseQuestion(msg []byte) (name string, qtype, qclass uint16, end int, ok bool) {
	if binary.BigEndian.Uint16(msg[4:6]) != 1 {
		return "", 0, 0, 0, false
	}
	var labels []string
	i, length := 12, 0
	for {
		if i >= len(msg) {
			return "", 0, 0, 0, false
		}
		l := int(msg[i])
		i++
		if l == 0 {
			break
		}
		// Compression pointers (0xC0) and extended labels have no place in a query.
		if l&0xC0 != 0 || i+l > len(msg) {
			return "", 0, 0, 0, false
		}
		if length += l + 1; length > 255 {
			return "", 0, 0, 0, false
		}
		labels = append(labels, strings.ToLower(string(msg[i:i+l])))
		i += l
	}
	if i+4 > len(msg) {
		return "", 0, 0, 0, false
	}
	qtype = binary.BigEndian.Uint16(msg[i : i+2])
	qclass = binary.BigEndian.Uint16(msg[i+2 : i+4])
	return strings.Join(labels, "."), qtype, qclass, i + 4, true
}
