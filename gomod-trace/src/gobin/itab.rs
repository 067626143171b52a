//! The dynamic type of a Go interface value, named from the executable's own
//! type data: given the itab an `error` holds, "*net.OpError". Only itabs the
//! linker wrote into the file resolve (those the compiler could see); an itab
//! the runtime built on the heap, or anything that does not check out, is None.

use super::elf::Image;
use super::pclntab::Pclntab;
use super::uvarint;

/// `itab._type` (after `inter *interfacetype`).
const ITAB_TYPE: u64 = 8;
/// `abi.Type.TFlag` and `.Str` (a nameOff from `moduledata.types`).
const TYPE_TFLAG: u64 = 20;
const TYPE_STR: u64 = 40;
/// The name is stored with a leading '*' that this type drops.
const TFLAG_EXTRA_STAR: u8 = 1 << 1;
/// `runtime.moduledata` word indices of `text` and `types` (`etypes` follows).
/// Go 1.20 added `covctrs, ecovctrs` before `types`; the pclntab magic changed
/// in the same release, so it tells the layout.
const MODULEDATA_TEXT: u64 = 22;
const MODULEDATA_TYPES_GO118: u64 = 35;
const MODULEDATA_TYPES_GO120: u64 = 37;
/// Longer type names exist (anonymous structs) but not among errors worth
/// naming; a longer length means the bytes are not a name.
const NAME_MAX: u64 = 1024;

/// The type name behind the `itab` pointer of an interface value, as Go's
/// `%T` prints it (package name, not path: "*fs.PathError").
///
/// `itab` is a link-time address: the value read from the process minus the
/// executable's load bias (they are equal for a non-PIE executable).
pub fn error_type_name(bytes: &[u8], itab: u64) -> Option<String> {
    let image = Image::parse(bytes).ok()?;
    let typ = pointer_at(&image, itab.checked_add(ITAB_TYPE)?)?;
    let (types, etypes) = type_data(&image)?;
    if !(types..etypes).contains(&typ) {
        return None;
    }
    let tflag = image.bytes_at(typ.checked_add(TYPE_TFLAG)?, 1)?[0];
    let str_off = image.bytes_at(typ.checked_add(TYPE_STR)?, 4)?;
    let str_off = i32::from_le_bytes(str_off.try_into().ok()?);
    let name = name_at(&image, types.checked_add_signed(i64::from(str_off))?)?;
    let name = if tflag & TFLAG_EXTRA_STAR != 0 {
        name.strip_prefix('*')?.to_string()
    } else {
        name
    };
    Some(name)
}

/// A pointer-sized word of static data. A linker that keeps dynamic relocation
/// addends out of place leaves a PIE's pointers zero in the file: then the
/// value is the relocation's addend.
fn pointer_at(image: &Image<'_>, vaddr: u64) -> Option<u64> {
    match image.u64_at(vaddr)? {
        0 => image.relative_relocation(vaddr),
        p => Some(p),
    }
}

/// `[moduledata.types, moduledata.etypes)`: where the type descriptors are and
/// what name offsets count from. `moduledata` is found as the data word that
/// points at the pclntab header (its first field) whose `text` agrees with the
/// pclntab's.
fn type_data(image: &Image<'_>) -> Option<(u64, u64)> {
    let table = Pclntab::find(image).ok()?;
    let (header, text) = (table.addr(), table.text_start());
    let types_word = if table.is_go120() {
        MODULEDATA_TYPES_GO120
    } else {
        MODULEDATA_TYPES_GO118
    };
    let word = |md: u64, i: u64| pointer_at(image, md.checked_add(8 * i)?);
    image.data_sections().find_map(|s| {
        let first = s.addr.checked_next_multiple_of(8)?;
        let skip = usize::try_from(first - s.addr).ok()?;
        s.data
            .get(skip..)?
            .chunks_exact(8)
            .enumerate()
            .find_map(|(i, w)| {
                if u64::from_le_bytes(w.try_into().ok()?) != header {
                    return None;
                }
                let md = first + 8 * i as u64;
                if word(md, MODULEDATA_TEXT)? != text {
                    return None;
                }
                let (types, etypes) = (word(md, types_word)?, word(md, types_word + 1)?);
                (types < etypes).then_some((types, etypes))
            })
    })
}

/// A Go 1.17+ `abi.Name`: one flag byte, the length as a uvarint, the bytes.
fn name_at(image: &Image<'_>, vaddr: u64) -> Option<String> {
    let start = vaddr.checked_add(1)?;
    let head = (1..=10).rev().find_map(|n| image.bytes_at(start, n))?;
    let (len, n) = uvarint(head)?;
    if len == 0 || len > NAME_MAX {
        return None;
    }
    let bytes = image.bytes_at(start.checked_add(n as u64)?, usize::try_from(len).ok()?)?;
    String::from_utf8(bytes.to_vec()).ok()
}
