//! The Go release that built an executable, read from the build-info blob the
//! linker writes at the start of `.go.buildinfo` (what `go version FILE` prints).
//! It reports only the version; module information is not needed here.

use super::elf::Image;
use super::{NotTraceable, uvarint};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Magic, pointer size, flags, then two pointer-sized words (32 bytes in all).
const HEADER_LEN: usize = 32;
/// The blob starts on a 16-byte boundary when it is not in its own section.
const ALIGN: u64 = 16;
const FLAG_BIG_ENDIAN: u8 = 1;
/// Go 1.18 and later: the strings follow the header, each prefixed by its
/// length as a uvarint, and the two pointers are zero.
const FLAG_VERSION_INLINE: u8 = 2;

/// The version string, e.g. "go1.23.1".
pub(crate) fn go_version(image: &Image<'_>) -> Result<String, NotTraceable> {
    let blob = find_blob(image).ok_or(NotTraceable::NotGo)?;
    let version = decode(blob, |ptr| read_string(image, ptr))?;
    if version.is_empty() {
        return Err(NotTraceable::NotGo);
    }
    Ok(version)
}

/// The blob: `.go.buildinfo` where the linker made that section (every ELF Go
/// has written since 1.13), else the first 16-byte-aligned magic in the file's
/// data, as `debug/buildinfo` searches.
fn find_blob<'a>(image: &Image<'a>) -> Option<&'a [u8]> {
    if let Some(s) = image.section(".go.buildinfo")
        && s.data.starts_with(MAGIC)
    {
        return Some(s.data);
    }
    image.data_sections().find_map(|s| {
        let mut from = 0;
        while let Some(i) = find(&s.data[from..], MAGIC) {
            let at = from + i;
            if (s.addr.wrapping_add(at as u64)) % ALIGN == 0 {
                return Some(&s.data[at..]);
            }
            from = at + 1;
        }
        None
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the version from a blob starting with the magic. `string_at` reads a
/// Go string header (data pointer, length) at an address, for the pointer form
/// written before Go 1.18.
fn decode(blob: &[u8], string_at: impl Fn(u64) -> Option<String>) -> Result<String, NotTraceable> {
    let malformed = |what: &str| NotTraceable::Malformed(format!("build info: {what}"));
    if blob.len() < HEADER_LEN || !blob.starts_with(MAGIC) {
        return Err(malformed("header truncated"));
    }
    let ptr_size = blob[14];
    let flags = blob[15];
    if flags & FLAG_VERSION_INLINE != 0 {
        let (len, n) = uvarint(&blob[HEADER_LEN..]).ok_or_else(|| malformed("length"))?;
        let start = HEADER_LEN + n;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= blob.len())
            .ok_or_else(|| malformed("version truncated"))?;
        return String::from_utf8(blob[start..end].to_vec()).map_err(|_| malformed("not UTF-8"));
    }
    // The pointer form: only little-endian 64-bit pointers can occur in a file
    // that Image accepted; anything else is damage.
    if ptr_size != 8 || flags & FLAG_BIG_ENDIAN != 0 {
        return Err(malformed("pointer size or byte order"));
    }
    let ptr = u64::from_le_bytes(blob[16..24].try_into().expect("8 bytes"));
    // Only Go before 1.18 wrote this form: if its string cannot be followed,
    // that much is still known.
    string_at(ptr).ok_or_else(|| NotTraceable::UnsupportedVersion("before go1.18".into()))
}

/// A Go string whose header (pointer, length) is at `vaddr`. Version strings
/// are short; a longer length means the header is not one.
fn read_string(image: &Image<'_>, vaddr: u64) -> Option<String> {
    let data = image.u64_at(vaddr)?;
    let len = image.u64_at(vaddr.checked_add(8)?)?;
    if len > 1024 {
        return None;
    }
    let bytes = image.bytes_at(data, usize::try_from(len).ok()?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ptr_size: u8, flags: u8, version_ptr: u64) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(ptr_size);
        b.push(flags);
        b.extend_from_slice(&version_ptr.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(b.len(), HEADER_LEN);
        b
    }

    fn no_strings(_: u64) -> Option<String> {
        None
    }

    #[test]
    fn inline_strings() {
        let mut b = header(8, FLAG_VERSION_INLINE, 0);
        b.push(8);
        b.extend_from_slice(b"go1.23.1");
        b.push(3);
        b.extend_from_slice(b"mod");
        assert_eq!(decode(&b, no_strings).unwrap(), "go1.23.1");
    }

    #[test]
    fn inline_string_with_a_long_length() {
        let version = format!("devel go1.24-{} +0000", "x".repeat(150));
        let mut b = header(8, FLAG_VERSION_INLINE, 0);
        b.extend_from_slice(&[(version.len() as u8) | 0x80, 1]);
        b.extend_from_slice(version.as_bytes());
        assert_eq!(decode(&b, no_strings).unwrap(), version);
    }

    #[test]
    fn inline_string_truncated() {
        let mut b = header(8, FLAG_VERSION_INLINE, 0);
        b.push(8);
        b.extend_from_slice(b"go1.2");
        assert!(matches!(
            decode(&b, no_strings),
            Err(NotTraceable::Malformed(_))
        ));
        let b = header(8, FLAG_VERSION_INLINE, 0);
        assert!(matches!(
            decode(&b, no_strings),
            Err(NotTraceable::Malformed(_))
        ));
    }

    #[test]
    fn pointer_form_before_go_1_18() {
        let b = header(8, 0, 0x4d_0000);
        let version = decode(&b, |ptr| (ptr == 0x4d_0000).then(|| "go1.17.3".to_string()));
        assert_eq!(version.unwrap(), "go1.17.3");
        match decode(&b, no_strings) {
            Err(NotTraceable::UnsupportedVersion(v)) => assert_eq!(v, "before go1.18"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_pointer_forms_are_malformed() {
        for (size, flags) in [(4, 0), (8, FLAG_BIG_ENDIAN)] {
            let b = header(size, flags, 0x1000);
            let r = decode(&b, |_| Some("go1.16".into()));
            assert!(matches!(r, Err(NotTraceable::Malformed(_))));
        }
    }

    #[test]
    fn short_blobs() {
        let b = header(8, FLAG_VERSION_INLINE, 0);
        for len in 0..HEADER_LEN {
            assert!(decode(&b[..len], no_strings).is_err());
        }
    }
}
