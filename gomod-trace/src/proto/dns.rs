//! DNS messages (RFC 1035 over UDP; RFC 7766's two-byte length prefix over TCP).
use std::net::IpAddr;

use serde::Serialize;
use simple_dns::{Packet, PacketFlag, QTYPE, rdata::RData};

use super::ProtoError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Question {
    pub name: String,
    /// `A`, `AAAA`, …
    pub qtype: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, …
    pub rcode: String,
    pub truncated: bool,
    pub questions: Vec<Question>,
    /// Addresses in the answer section.
    pub addresses: Vec<IpAddr>,
    /// Alias targets (CNAME) in the answer section.
    pub aliases: Vec<String>,
    /// EDNS(0) UDP payload size, when the message carries an OPT record.
    pub edns_udp_size: Option<u16>,
}

fn rcode_name(code: simple_dns::RCODE) -> String {
    use simple_dns::RCODE::*;
    match code {
        NoError => "NOERROR".into(),
        FormatError => "FORMERR".into(),
        ServerFailure => "SERVFAIL".into(),
        NameError => "NXDOMAIN".into(),
        NotImplemented => "NOTIMP".into(),
        Refused => "REFUSED".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

fn qtype_name(qtype: QTYPE) -> String {
    match qtype {
        QTYPE::TYPE(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

/// Parses one DNS message as carried over UDP.
pub fn parse(bytes: &[u8]) -> Result<DnsMessage, ProtoError> {
    let packet = Packet::parse(bytes).map_err(|e| ProtoError::Dns(e.to_string()))?;
    let mut addresses = Vec::new();
    let mut aliases = Vec::new();
    for answer in &packet.answers {
        match &answer.rdata {
            RData::A(a) => addresses.push(IpAddr::from(std::net::Ipv4Addr::from(a.address))),
            RData::AAAA(a) => addresses.push(IpAddr::from(std::net::Ipv6Addr::from(a.address))),
            RData::CNAME(c) => aliases.push(c.0.to_string()),
            _ => {}
        }
    }
    Ok(DnsMessage {
        id: packet.id(),
        response: packet.has_flags(PacketFlag::RESPONSE),
        rcode: rcode_name(packet.rcode()),
        truncated: packet.has_flags(PacketFlag::TRUNCATION),
        questions: packet
            .questions
            .iter()
            .map(|q| Question { name: q.qname.to_string(), qtype: qtype_name(q.qtype) })
            .collect(),
        addresses,
        aliases,
        edns_udp_size: packet.opt().map(|opt| opt.udp_packet_size),
    })
}

/// Parses the first DNS message of a TCP stream (two-byte length prefix).
pub fn parse_tcp(bytes: &[u8]) -> Result<DnsMessage, ProtoError> {
    let [hi, lo, rest @ ..] = bytes else { return Err(ProtoError::Dns("no length prefix".into())) };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    parse(rest.get(..len).ok_or_else(|| ProtoError::Dns("message cut short".into()))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::{CLASS, Name, Question as Q, ResourceRecord, TYPE, rdata::A};

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut p = Packet::new_query(id);
        p.questions.push(Q::new(Name::new_unchecked(name), TYPE::A.into(), CLASS::IN.into(), false));
        p.build_bytes_vec().unwrap()
    }

    #[test]
    fn parses_query_and_answer() {
        let q = parse(&query(7, "proxy.lab.test")).unwrap();
        assert_eq!((q.id, q.response), (7, false));
        assert_eq!(q.questions, vec![Question { name: "proxy.lab.test".into(), qtype: "A".into() }]);

        let mut r = Packet::new_reply(7);
        r.questions.push(Q::new(Name::new_unchecked("proxy.lab.test"), TYPE::A.into(), CLASS::IN.into(), false));
        r.answers.push(ResourceRecord::new(
            Name::new_unchecked("proxy.lab.test"),
            CLASS::IN,
            60,
            RData::A(A { address: u32::from(std::net::Ipv4Addr::new(10, 99, 0, 2)) }),
        ));
        let a = parse(&r.build_bytes_vec().unwrap()).unwrap();
        assert!(a.response);
        assert_eq!(a.rcode, "NOERROR");
        assert_eq!(a.addresses, vec!["10.99.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn names_nxdomain() {
        let mut r = Packet::new_reply(9);
        *r.rcode_mut() = simple_dns::RCODE::NameError;
        assert_eq!(parse(&r.build_bytes_vec().unwrap()).unwrap().rcode, "NXDOMAIN");
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[1, 2, 3]).is_err());
        let q = query(1, "a.b");
        assert!(parse(&q[..q.len() - 3]).is_err());
        assert!(parse_tcp(&[0, 200, 1, 2]).is_err());
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        assert_eq!(parse_tcp(&framed).unwrap().id, 1);
    }
}
