//! Raw ring-buffer records → typed events, at one checked boundary: the tag is
//! checked before anything else is read, every length is bounded, and a record
//! that does not fit its kind is an error, never a panic or a guess.
use std::{collections::BTreeMap, mem::size_of, net::SocketAddr};

use bytes::Bytes;
use gomod_trace_ebpf::{
    ConnectErrorRecord, ConnectRecord, ENV_CAPTURE, EnvironmentRecord, EventHeader, ExecRecord, FileRecord, file_op, ExitRecord, ForkRecord,
    HttpConnectionRecord, HttpRequestRecord, HttpResponseRecord, PayloadRecord, SocketEntry, SocketSignalRecord, TcpStateRecord, direction,
    hook, kind,
};

use crate::redact;
use crate::event::{At, ConnectHook, Counters, Silence, Direction, Event, ExtractedFiles, FileOp, Protocol, TcpState, ip_from_wire};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {needed}-byte {what}")]
    Short { what: &'static str, len: usize, needed: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("{field} has invalid value {value}")]
    Invalid { field: &'static str, value: i64 },
}

/// What decoding needs to know about the host the records came from.
#[derive(Debug, Default, Clone)]
pub struct DecodeContext {
    /// `skb_drop_reason` names, from tracefs.
    pub drop_reasons: BTreeMap<u32, String>,
    /// The probed Go executables, to name the type of an error a request ended with.
    pub go_executables: crate::goerrors::Executables,
}

/// Copies a `#[repr(C)]` record out of a byte slice that is long enough for it.
fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short { what, len: bytes.len(), needed: size_of::<T>() });
    }
    // SAFETY: the length was checked; the record types are plain data for which
    // every bit pattern is valid; `read_unaligned` needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

fn tcp_state(value: i32, field: &'static str) -> Result<TcpState, DecodeError> {
    TcpState::try_from(value).map_err(|v| DecodeError::Invalid { field, value: v.into() })
}

fn protocol(value: u16) -> Result<Protocol, DecodeError> {
    match value {
        6 => Ok(Protocol::Tcp),
        17 => Ok(Protocol::Udp),
        other => Err(DecodeError::Invalid { field: "protocol", value: other.into() }),
    }
}

fn socket_addr(family: u16, addr: [u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = ip_from_wire(family, addr)
        .ok_or(DecodeError::Invalid { field: "family", value: family.into() })?;
    Ok(SocketAddr::new(ip, port))
}

/// A NUL-terminated byte string, lossily as UTF-8.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The NUL-separated argument block: complete arguments only (a window that ends
/// mid-argument keeps that argument's prefix, since it is still the best we have).
fn argv(block: &[u8]) -> Vec<String> {
    block
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// One kernel record as an event, every text from outside redacted
/// ([`redact::event`]): nothing after this point sees a secret.
pub fn decode(bytes: &[u8], context: &DecodeContext) -> Result<Event, DecodeError> {
    let mut event = decode_record(bytes, context)?;
    redact::event(&mut event);
    Ok(event)
}

fn decode_record(bytes: &[u8], context: &DecodeContext) -> Result<Event, DecodeError> {
    let header: EventHeader = read(bytes, "header")?;
    let at = At { ts_ns: header.ts_ns, cpu: header.cpu, seq: header.seq };
    Ok(match header.kind {
        kind::EXEC => {
            let r: ExecRecord = read(bytes, "exec record")?;
            let len = (r.argv_len as usize).min(r.argv.len());
            let mut args = argv(&r.argv[..len]);
            // An argument the window ends in (no NUL after it) is a prefix.
            if len > 0 && r.argv[len - 1] != 0
                && let Some(last) = args.last_mut()
            {
                *last = redact::cut(last);
            }
            Event::Exec { at, pid: header.pid, build: r.build, comm: c_string(&r.comm), argv: args }
        }
        kind::ENVIRONMENT => {
            let r: EnvironmentRecord = read(bytes, "environment record")?;
            let env_len = (r.env_len as usize).min(ENV_CAPTURE);
            let path_len = (r.path_len as usize).min(r.path.len());
            let truncated = env_len == ENV_CAPTURE;
            // A cut block ends inside a variable: only whole ones are kept (a cut
            // value could end inside a credential; `truncated` says some are missing).
            let whole = if truncated { r.env[..env_len].iter().rposition(|&b| b == 0).map_or(0, |i| i + 1) } else { env_len };
            Event::Environment {
                at,
                build: r.build,
                executable: c_string(&r.path[..path_len]),
                vars: crate::goenv::relevant_environment(&r.env[..whole]),
                truncated,
            }
        }
        kind::FILE => {
            let r: FileRecord = read(bytes, "file record")?;
            let path = |bytes: &[u8], len: u32| c_string(&bytes[..(len as usize).min(bytes.len())]);
            Event::File {
                at,
                pid: header.pid,
                build: r.build,
                op: match r.op {
                    file_op::OPEN => FileOp::Open,
                    file_op::RENAME => FileOp::Rename,
                    file_op::UNLINK => FileOp::Unlink,
                    other => return Err(DecodeError::Invalid { field: "file op", value: other.into() }),
                },
                path: path(&r.path, r.path_len),
                to: (r.op == file_op::RENAME).then(|| path(&r.path2, r.path2_len)),
                extracted: (r.extraction.files > 0).then_some(ExtractedFiles {
                    files: r.extraction.files,
                    first_ns: r.extraction.first_ns,
                    last_ns: r.extraction.last_ns,
                }),
            }
        }
        kind::FORK => {
            let r: ForkRecord = read(bytes, "fork record")?;
            Event::Fork { at, parent: header.pid, child: r.child, build: r.build }
        }
        kind::CONNECT_ERROR => {
            let r: ConnectErrorRecord = read(bytes, "connect error record")?;
            // Cookies start at 1: 0 is the kernel's "no inet socket known" (a Unix
            // socket, io_uring), kept so that the correlator does not guess.
            Event::ConnectError { at, pid: header.pid, build: r.build, errno: r.errno, cookie: Some(r.cookie) }
        }
        kind::EXIT => {
            let r: ExitRecord = read(bytes, "exit record")?;
            Event::Exit { at, pid: header.pid, build: r.build, wait_status: r.exit_code }
        }
        kind::CONNECT => {
            let r: ConnectRecord = read(bytes, "connect record")?;
            Event::Connect {
                at,
                pid: header.pid,
                build: r.build,
                cookie: r.cookie,
                protocol: protocol(r.protocol)?,
                hook: match r.hook {
                    hook::CONNECT => ConnectHook::Connect,
                    hook::SENDMSG => ConnectHook::Sendmsg,
                    other => return Err(DecodeError::Invalid { field: "hook", value: other.into() }),
                },
                remote: socket_addr(r.family, r.addr, r.port)?,
            }
        }
        kind::TCP_STATE => {
            let r: TcpStateRecord = read(bytes, "tcp state record")?;
            let new = tcp_state(r.new_state, "new state")?;
            Event::TcpState {
                at,
                cookie: r.cookie,
                old: tcp_state(r.old_state, "old state")?,
                new,
                local: socket_addr(r.family, r.saddr, r.sport)?,
                remote: socket_addr(r.family, r.daddr, r.dport)?,
                error: r.sk_err,
                counters: (new == TcpState::Close).then(|| counters(&r.counters)),
            }
        }
        kind::TCP_RETRANSMIT => {
            let r: SocketSignalRecord = read(bytes, "retransmit record")?;
            Event::TcpRetransmit { at, cookie: r.cookie, state: tcp_state(r.value as i32, "state")? }
        }
        kind::TCP_RESET => {
            let r: SocketSignalRecord = read(bytes, "reset record")?;
            Event::TcpReset { at, cookie: r.cookie }
        }
        kind::SKB_DROP => {
            let r: SocketSignalRecord = read(bytes, "drop record")?;
            let reason = context
                .drop_reasons
                .get(&r.value)
                .cloned()
                .unwrap_or_else(|| format!("REASON_{}", r.value));
            Event::Drop { at, cookie: r.cookie, reason }
        }
        kind::PAYLOAD => {
            let r: PayloadRecord = read(bytes, "payload record")?;
            let len = r.captured_len as usize;
            if len > r.data.len() {
                return Err(DecodeError::Invalid { field: "captured_len", value: len as i64 });
            }
            Event::Payload {
                at,
                cookie: r.cookie,
                direction: match r.direction {
                    direction::EGRESS => Direction::Egress,
                    direction::INGRESS => Direction::Ingress,
                    other => {
                        return Err(DecodeError::Invalid { field: "direction", value: other.into() });
                    }
                },
                protocol: protocol(r.protocol)?,
                segment_len: r.segment_len,
                data: Bytes::copy_from_slice(&r.data[..len]),
            }
        }
        kind::HTTP_REQUEST => {
            let r: HttpRequestRecord = read(bytes, "http request record")?;
            let field = |bytes: &[u8], len: u32| {
                let n = (len as usize).min(bytes.len());
                (String::from_utf8_lossy(&bytes[..n]).into_owned(), n < len as usize)
            };
            let (method, _) = field(&r.method, r.method_len);
            let (scheme, _) = field(&r.scheme, r.scheme_len);
            let (host, host_cut) = field(&r.host, r.host_len);
            let (path, path_cut) = field(&r.path, r.path_len);
            let (query, query_cut) = field(&r.query, r.query_len);
            let mut url = format!("{scheme}://{host}{path}");
            if !query.is_empty() {
                url.push('?');
                url.push_str(&query);
            }
            Event::HttpRequest {
                at,
                pid: header.pid,
                build: r.build,
                goroutine: r.goroutine,
                method,
                url,
                truncated: host_cut || path_cut || query_cut,
            }
        }
        kind::HTTP_CONNECTION => {
            let r: HttpConnectionRecord = read(bytes, "http connection record")?;
            Event::HttpConnection {
                at,
                pid: header.pid,
                build: r.build,
                goroutine: r.goroutine,
                cookie: r.cookie,
                http_major: r.http_major.min(u8::MAX.into()) as u8,
            }
        }
        kind::HTTP_RESPONSE => {
            let r: HttpResponseRecord = read(bytes, "http response record")?;
            let status = u16::try_from(r.status).ok().filter(|s| (100..1000).contains(s));
            let error = (r.error_itab != 0).then(|| {
                let text_len = (r.error_text_len as usize).min(r.error_text.len());
                let text = String::from_utf8_lossy(&r.error_text[..text_len]);
                let text_cut = text_len < r.error_text_len as usize;
                let text = if text_cut { redact::cut(&text) } else { text.into_owned() };
                let type_name = context.go_executables.error_type_name(r.binary, r.error_itab);
                crate::goerrors::describe(type_name.as_deref(), &text, text_cut)
            });
            Event::HttpResponse {
                at,
                pid: header.pid,
                build: r.build,
                goroutine: r.goroutine,
                status: status.filter(|_| error.is_none()),
                proto: status.map(|_| format!("HTTP/{}.{}", r.proto_major, r.proto_minor)),
                error,
            }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// A socket's counters as the kernel programs keep them (at close, or read from
/// the socket map while the socket is open).
pub fn counters(c: &SocketEntry) -> Counters {
    Counters {
        bytes_sent: c.bytes_sent,
        bytes_received: c.bytes_received,
        segments_sent: c.segments_sent,
        segments_received: c.segments_received,
        first_received_ns: Some(c.first_received_ns).filter(|&t| t != 0),
        last_received_ns: Some(c.last_received_ns).filter(|&t| t != 0),
        longest_silence: (c.longest_silence_ns != 0)
            .then_some(Silence { ns: c.longest_silence_ns, end_ns: c.longest_silence_end_ns }),
        last_sent_ns: Some(c.last_sent_ns).filter(|&t| t != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(record: &T) -> Vec<u8> {
        // SAFETY: reading a plain `#[repr(C)]` record as bytes.
        unsafe { std::slice::from_raw_parts(record as *const T as *const u8, size_of::<T>()) }
            .to_vec()
    }

    fn header(kind: u32) -> EventHeader {
        EventHeader { kind, cpu: 1, seq: 7, ts_ns: 1_000, pid: 42, tid: 43 }
    }

    #[test]
    fn decodes_connect_v4() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, 5]);
        let record = ConnectRecord {
            header: header(kind::CONNECT),
            cookie: 99,
            build: 42,
            family: 2,
            protocol: 6,
            port: 443,
            hook: hook::CONNECT,
            _pad: 0,
            addr,
        };
        let event = decode(&as_bytes(&record), &DecodeContext::default()).unwrap();
        assert_eq!(
            event,
            Event::Connect {
                at: At { ts_ns: 1_000, cpu: 1, seq: 7 },
                pid: 42,
                build: 42,
                cookie: 99,
                protocol: Protocol::Tcp,
                hook: ConnectHook::Connect,
                remote: "10.0.0.5:443".parse().unwrap(),
            }
        );
    }

    #[test]
    fn connect_error_carries_its_socket_cookie_when_known() {
        let mut record = ConnectErrorRecord { header: header(kind::CONNECT_ERROR), build: 40, errno: 113, cookie: 99 };
        let event = decode(&as_bytes(&record), &DecodeContext::default()).unwrap();
        assert_eq!(
            event,
            Event::ConnectError { at: At { ts_ns: 1_000, cpu: 1, seq: 7 }, pid: 42, build: 40, errno: 113, cookie: Some(99) }
        );
        record.cookie = 0;
        let Event::ConnectError { cookie, .. } = decode(&as_bytes(&record), &DecodeContext::default()).unwrap() else {
            panic!("not a connect error")
        };
        assert_eq!(cookie, Some(0), "no socket known: kept, so that nothing is guessed");
    }

    #[test]
    fn rejects_truncated_unknown_and_invalid_records() {
        let ctx = DecodeContext::default();
        assert!(matches!(decode(&[1, 2, 3], &ctx), Err(DecodeError::Short { .. })));
        let h = as_bytes(&header(kind::EXEC));
        assert!(matches!(decode(&h, &ctx), Err(DecodeError::Short { .. })));
        assert_eq!(decode(&as_bytes(&header(77)), &ctx), Err(DecodeError::UnknownKind(77)));
        let record = SocketSignalRecord { header: header(kind::TCP_RETRANSMIT), cookie: 1, value: 99, _pad: 0 };
        assert!(matches!(decode(&as_bytes(&record), &ctx), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn payload_length_is_bounded_by_its_buffer() {
        let mut record = PayloadRecord {
            header: header(kind::PAYLOAD),
            cookie: 1,
            direction: direction::EGRESS,
            protocol: 17,
            segment_len: 2000,
            captured_len: 4,
            _pad: 0,
            data: [0xab; gomod_trace_ebpf::PAYLOAD_CAPTURE],
        };
        let Event::Payload { data, segment_len, .. } = decode(&as_bytes(&record), &DecodeContext::default()).unwrap() else {
            panic!("not a payload")
        };
        assert_eq!((data.len(), segment_len), (4, 2000));
        record.captured_len = 10_000;
        assert!(decode(&as_bytes(&record), &DecodeContext::default()).is_err());
    }

    #[test]
    fn drop_reasons_are_named_from_the_host_table() {
        let ctx = DecodeContext { drop_reasons: [(16, "NETFILTER_DROP".to_string())].into(), ..DecodeContext::default() };
        let record = SocketSignalRecord { header: header(kind::SKB_DROP), cookie: 5, value: 16, _pad: 0 };
        let Event::Drop { reason, .. } = decode(&as_bytes(&record), &ctx).unwrap() else { panic!() };
        assert_eq!(reason, "NETFILTER_DROP");
    }

    #[test]
    fn argv_block_splits_on_nul() {
        assert_eq!(argv(b"go\0mod\0download\0"), vec!["go", "mod", "download"]);
        assert_eq!(argv(b"go\0mod\0down"), vec!["go", "mod", "down"]);
    }
}
