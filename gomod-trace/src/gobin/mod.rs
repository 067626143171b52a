//! What the request uprobes need to know about one Go executable, read from the
//! file alone (no root, no running process): the Go release that built it, the
//! struct offsets of that release, and the file offsets of the HTTP client's
//! round-trip functions and of their RET instructions. It never guesses: a file
//! it cannot read with certainty is `NotTraceable`, with a short reason.

mod buildinfo;
mod elf;
mod itab;
mod offsets;
mod pclntab;
mod rets;

use std::path::Path;

use gomod_trace_ebpf::GoOffsets;

pub use itab::error_type_name;

/// Every HTTP/1 and HTTP/2 request of a `net/http.Transport` passes through it.
pub const ROUND_TRIP: &str = "net/http.(*Transport).roundTrip";
/// An HTTP/1 request on one connection.
pub const PERSIST_CONN_ROUND_TRIP: &str = "net/http.(*persistConn).roundTrip";
/// An HTTP/2 request on one connection (the bundled x/net/http2 client).
pub const H2_ROUND_TRIP: &str = "net/http.(*http2ClientConn).RoundTrip";
/// What [`H2_ROUND_TRIP`] became a wrapper of (Go 1.23): the wrapper is then
/// inlined into its callers, and only this one is called for every request.
pub const H2_ROUND_TRIP_INNER: &str = "net/http.(*http2ClientConn).roundTrip";

/// Where to attach in one executable, and the offsets its probes read with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// As `go version FILE` prints it, e.g. "go1.23.1".
    pub go_version: String,
    pub offsets: GoOffsets,
    /// [`ROUND_TRIP`], with its returns.
    pub round_trip: Function,
    /// [`PERSIST_CONN_ROUND_TRIP`] (entry only).
    pub persist_conn_round_trip: Function,
    /// [`H2_ROUND_TRIP_INNER`] where it exists, else [`H2_ROUND_TRIP`] (entry only).
    pub h2_round_trip: Function,
}

/// A function's probe points, as offsets in the file (what aya's
/// `UProbeAttachLocation::AbsoluteOffset` takes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: &'static str,
    /// File offset of the first instruction.
    pub entry: u64,
    /// File offset where the entry probe goes: the instruction right after the
    /// prologue's stack check, else the entry. A call whose stack had to grow
    /// starts over at the entry but passes there once; and since Go 1.21 that
    /// instruction is the frame pointer's push, which the kernel emulates (one
    /// trap; the check's compare must be stepped out of line, several times
    /// dearer).
    pub probe: u64,
    /// File offsets of every RET in the body (empty unless asked for).
    pub returns: Vec<u64>,
}

/// Why an executable's requests cannot be traced. Displays as a short phrase for
/// notes such as "requests: not traced (go1.17.3 unsupported)".
#[derive(Debug, thiserror::Error)]
pub enum NotTraceable {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a Go program")]
    NotGo,
    #[error("{0} unsupported")]
    UnsupportedArch(String),
    #[error("{0} unsupported")]
    UnsupportedVersion(String),
    /// A Go program that does not link `net/http`'s client: nothing to probe.
    #[error("no HTTP client")]
    NoHttpClient,
    #[error("{0} not found")]
    MissingFunction(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed Go executable: {0}")]
    Malformed(String),
}

/// Reads the whole file's bytes (`bytes[0]` is the ELF header).
pub fn inspect(bytes: &[u8]) -> Result<Inspection, NotTraceable> {
    let image = elf::Image::parse(bytes)?;
    let go_version = buildinfo::go_version(&image)?;
    let offsets = offsets::for_version(&go_version)
        .ok_or_else(|| NotTraceable::UnsupportedVersion(go_version.clone()))?;
    let table = pclntab::Pclntab::find(&image)?;
    let [round_trip, persist, h2, h2_inner] =
        table.lookup([ROUND_TRIP, PERSIST_CONN_ROUND_TRIP, H2_ROUND_TRIP, H2_ROUND_TRIP_INNER])?;
    let round_trip = round_trip.ok_or(NotTraceable::NoHttpClient)?;
    let persist = persist.ok_or(NotTraceable::MissingFunction(PERSIST_CONN_ROUND_TRIP))?;
    let (h2_name, h2) = match h2_inner {
        Some(inner) => (H2_ROUND_TRIP_INNER, inner),
        None => (H2_ROUND_TRIP, h2.ok_or(NotTraceable::MissingFunction(H2_ROUND_TRIP))?),
    };
    Ok(Inspection {
        go_version,
        offsets,
        round_trip: function(&image, ROUND_TRIP, round_trip, true)?,
        persist_conn_round_trip: function(&image, PERSIST_CONN_ROUND_TRIP, persist, false)?,
        h2_round_trip: function(&image, h2_name, h2, false)?,
    })
}

/// Maps the file and inspects it.
pub fn inspect_file(path: &Path) -> Result<Inspection, NotTraceable> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the map is read-only and private to this call; a file truncated
    // underneath it would fault, which is the accepted risk of mapping files
    // (executables being run are not truncated in place: the kernel refuses
    // writes to them with ETXTBSY).
    let map = unsafe { memmap2::Mmap::map(&file)? };
    inspect(&map)
}

/// Every function the executable's pclntab lists, with its entry address
/// (virtual, not a file offset), in address order: for diagnostics and for the
/// tests that compare the reader with the symbol table.
pub fn functions(bytes: &[u8]) -> Result<Vec<(String, u64)>, NotTraceable> {
    let image = elf::Image::parse(bytes)?;
    let table = pclntab::Pclntab::find(&image)?;
    table
        .functions()
        .map(|f| f.map(|(name, range)| (String::from_utf8_lossy(name).into_owned(), range.entry)))
        .collect()
}

fn function(
    image: &elf::Image<'_>,
    name: &'static str,
    code: pclntab::CodeRange,
    with_returns: bool,
) -> Result<Function, NotTraceable> {
    let malformed = |what: &str| NotTraceable::Malformed(format!("{name}: {what}"));
    if !image.is_code(code.entry) {
        return Err(malformed("entry outside the code"));
    }
    let entry = image
        .file_offset(code.entry)
        .ok_or_else(|| malformed("entry not in the file"))?;
    let len = usize::try_from(code.end.saturating_sub(code.entry))
        .map_err(|_| malformed("too large"))?;
    let body = image
        .bytes_at(code.entry, len)
        .ok_or_else(|| malformed("body not in the file"))?;
    let returns = if with_returns {
        rets::returns(body, code.entry)?
            .into_iter()
            .map(|ret| entry + (ret - code.entry))
            .collect()
    } else {
        Vec::new()
    };
    let probe = rets::after_stack_check(body, code.entry).map_or(entry, |push| entry + (push - code.entry));
    Ok(Function {
        name,
        entry,
        probe,
        returns,
    })
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`): value and bytes read.
fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_short_phrases() {
        let v = NotTraceable::UnsupportedVersion("go1.17.3".into());
        assert_eq!(
            format!("requests: not traced ({v})"),
            "requests: not traced (go1.17.3 unsupported)"
        );
        assert_eq!(
            NotTraceable::UnsupportedArch("arm64".into()).to_string(),
            "arm64 unsupported"
        );
        assert_eq!(NotTraceable::NoHttpClient.to_string(), "no HTTP client");
        assert_eq!(
            NotTraceable::MissingFunction(H2_ROUND_TRIP).to_string(),
            "net/http.(*http2ClientConn).RoundTrip not found"
        );
    }

    #[test]
    fn uvarints() {
        assert_eq!(uvarint(&[0]), Some((0, 1)));
        assert_eq!(uvarint(&[0x7f, 9]), Some((127, 1)));
        assert_eq!(uvarint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(uvarint(&[0xff; 9]), None);
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Some((u64::MAX, 10))
        );
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
        assert_eq!(uvarint(&[]), None);
    }

    #[test]
    fn garbage_is_not_elf() {
        assert!(matches!(
            inspect(b"\x7fELG not really"),
            Err(NotTraceable::NotElf)
        ));
        let e = inspect_file(Path::new("/nonexistent/gomod-trace-test")).unwrap_err();
        assert!(matches!(e, NotTraceable::Io(_)));
    }
}
