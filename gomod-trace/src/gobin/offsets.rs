//! Byte offsets of the struct fields the request uprobes read, per Go release.
//! A release not in the table is not traced: offsets are never extrapolated.
//!
//! Evidence, per release:
//! - 1.19, 1.21, 1.22, 1.23: the DWARF of a program built by that toolchain
//!   (tests/gobin.rs checks every toolchain installed under /usr/lib/go-*).
//! - 1.18, 1.20, 1.24, 1.25: no toolchain here. Twelve of the fifteen offsets
//!   are in the per-release DWARF table of OpenTelemetry's eBPF instrumentation
//!   (open-telemetry/opentelemetry-ebpf-instrumentation,
//!   pkg/internal/goexec/offsets.json: Go 1.17.0 to 1.27.1), equal to ours
//!   for 1.17.0 through 1.25.x. The other three (`crypto/tls.Conn.conn`,
//!   `Response.ProtoMajor`, `.ProtoMinor`) lead their structs in every Go
//!   source read (`conn` has been tls.Conn's first field since 2010;
//!   Response opens with Status, StatusCode, Proto, ProtoMajor, ProtoMinor
//!   since Go 1.0, and StatusCode's offset, 16, is in that table for every
//!   release).
//! - 1.26 moved `net/url.URL.RawQuery` (96 → 88) and 1.27 moved the HTTP/2
//!   client to `net/http/internal/http2`: later releases need their own row.

use gomod_trace_ebpf::GoOffsets;

/// The first and last minor release (of Go 1) a row holds for.
struct Row {
    minors: (u32, u32),
    offsets: GoOffsets,
}

/// Go 1.18 to 1.25 share one layout of everything read.
const TABLE: [Row; 1] = [Row {
    minors: (18, 25),
    offsets: GoOffsets {
        request_method: 0,
        request_url: 16,
        url_scheme: 0,
        url_host: 40,
        url_path: 56,
        url_raw_query: 96,
        response_status_code: 16,
        response_proto_major: 40,
        response_proto_minor: 48,
        persist_conn_conn: 80,
        persist_conn_tls_state: 96,
        h2_client_conn_tconn: 8,
        tls_conn_conn: 0,
        net_conn_fd: 0,
        // net.netFD.pfd (0) + internal/poll.FD.Sysfd (16: after fdMutex).
        net_fd_sysfd: 16,
        _pad: 0,
    },
}];

/// The offsets for a version string from the build info ("go1.21.13").
pub(crate) fn for_version(version: &str) -> Option<GoOffsets> {
    let minor = go1_minor(version)?;
    TABLE
        .iter()
        .find(|row| (row.minors.0..=row.minors.1).contains(&minor))
        .map(|row| row.offsets)
}

/// The minor release of a Go 1 release or release candidate: "go1.21.13",
/// "go1.21.0", "go1.20", "go1.22rc1" (layouts are frozen by the first release
/// candidate), optionally followed by " X:experiment". Development builds
/// ("devel ...") and betas are None: their layouts may differ from the release.
fn go1_minor(version: &str) -> Option<u32> {
    let release = version.split_whitespace().next()?;
    let rest = release.strip_prefix("go1.")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let minor: u32 = rest[..digits].parse().ok()?;
    let suffix = &rest[digits..];
    let valid = match suffix.strip_prefix('.') {
        Some(patch) => !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()),
        None => suffix.is_empty() || is_rc(suffix),
    };
    valid.then_some(minor)
}

fn is_rc(suffix: &str) -> bool {
    suffix
        .strip_prefix("rc")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_to_minor_releases() {
        for (version, minor) in [
            ("go1.21.13", Some(21)),
            ("go1.21.0", Some(21)),
            ("go1.20", Some(20)),
            ("go1.22rc1", Some(22)),
            ("go1.23.5 X:boringcrypto", Some(23)),
            ("go1.22beta1", None),
            ("go1.22rc", None),
            ("go1.21.", None),
            ("go1.21.x", None),
            ("devel go1.24-2e2ba2d Tue Dec 3 2024", None),
            ("go2.0", None),
            ("go1", None),
            ("", None),
        ] {
            assert_eq!(go1_minor(version), minor, "{version}");
        }
    }

    #[test]
    fn supported_range() {
        for v in [
            "go1.18",
            "go1.19.8",
            "go1.20.14",
            "go1.21.13",
            "go1.22.12",
            "go1.23.5",
            "go1.24.0",
            "go1.25.3",
        ] {
            assert!(for_version(v).is_some(), "{v}");
        }
        for v in ["go1.17.3", "go1.16", "go1.26.0", "go1.27rc1", "devel +abc"] {
            assert!(for_version(v).is_none(), "{v}");
        }
    }

    #[test]
    fn rows_do_not_overlap() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(a.minors.0 <= a.minors.1);
            for b in &TABLE[i + 1..] {
                assert!(a.minors.1 < b.minors.0 || b.minors.1 < a.minors.0);
            }
        }
    }
}
