//! Go's function table (`.gopclntab`, the runtime's `pcHeader`), in the layout
//! written by Go 1.18 and later: enough of it to find a function's entry and end
//! address by its name. Every offset in the table is checked against its bytes:
//! a damaged table is `Malformed`, never a panic or an out-of-range read.

use super::NotTraceable;
use super::elf::Image;

/// Go 1.18 and 1.19.
const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.20 and later (funcdata became relative; nothing read here changed).
const MAGIC_GO120: u32 = 0xffff_fff1;
/// magic, two pad bytes, minLC, ptrSize, then eight pointer-sized words.
const HEADER_LEN: usize = 8 + 8 * 8;
/// Byte offset of `textStart` in the header.
const TEXT_START_AT: usize = 8 + 2 * 8;

/// A function's code: `[entry, end)`, virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CodeRange {
    pub entry: u64,
    pub end: u64,
}

/// A parsed table. `functab` holds `nfunc + 1` pairs (entry offset from
/// `text_start`, offset of the function's `_func` record from `functab`'s
/// start); the last entry offset is the end of the last function.
pub(crate) struct Pclntab<'a> {
    /// Virtual address of the header (0 when parsed from bare bytes).
    addr: u64,
    magic: u32,
    text_start: u64,
    nfunc: usize,
    funcnames: &'a [u8],
    functab: &'a [u8],
}

impl<'a> Pclntab<'a> {
    /// Finds the table in the executable: the `.gopclntab` section (named
    /// `.data.rel.ro.gopclntab` in position-independent executables), else the
    /// `runtime.pclntab` symbol, else the first aligned header in the data (an
    /// externally linked PIE merges the table into `.data.rel.ro` and, once
    /// stripped, keeps no name for it).
    pub fn find(image: &Image<'a>) -> Result<Self, NotTraceable> {
        let named = [".gopclntab", ".data.rel.ro.gopclntab"]
            .into_iter()
            .find_map(|name| image.section(name))
            .map(|s| (s.addr, s.data))
            .or_else(|| {
                let addr = image.symbol("runtime.pclntab")?;
                Some((addr, image.tail_at(addr)?))
            });
        if let Some((addr, data)) = named {
            return Ok(Self::parse(data, || text_start_fallback(image, addr))?.at(addr));
        }
        image
            .data_sections()
            .flat_map(|s| {
                (0..s.data.len().saturating_sub(HEADER_LEN))
                    .step_by(8)
                    .filter(move |&at| looks_like_header(&s.data[at..]))
                    .map(move |at| (s.addr + at as u64, &s.data[at..]))
            })
            .find_map(|(addr, data)| {
                let table = Self::parse(data, || text_start_fallback(image, addr)).ok()?;
                Some(table.at(addr))
            })
            .ok_or(NotTraceable::NotGo)
    }

    /// Parses a table that starts at `data[0]` and may run to its end.
    /// `text_start_fallback` is asked only when the header's `textStart` is 0.
    pub fn parse(
        data: &'a [u8],
        text_start_fallback: impl FnOnce() -> Option<u64>,
    ) -> Result<Self, NotTraceable> {
        let malformed = |what: &str| NotTraceable::Malformed(format!("pclntab: {what}"));
        let magic = u32_at(data, 0).ok_or_else(|| malformed("header truncated"))?;
        if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
            return Err(NotTraceable::UnsupportedVersion(format!(
                "pclntab magic {magic:#010x}"
            )));
        }
        if data.len() < HEADER_LEN {
            return Err(malformed("header truncated"));
        }
        if data[4] != 0 || data[5] != 0 || data[6] != 1 || data[7] != 8 {
            return Err(malformed("not an x86-64 header"));
        }
        let word = |i: usize| u64_at(data, 8 + 8 * i).expect("header length checked");
        let offset = |i: usize| usize::try_from(word(i)).ok().filter(|&o| o <= data.len());
        let nfunc = usize::try_from(word(0)).map_err(|_| malformed("nfunc"))?;
        let text_start = match word(2) {
            0 => text_start_fallback().ok_or_else(|| malformed("textStart is 0"))?,
            t => t,
        };
        let funcnames = &data[offset(3).ok_or_else(|| malformed("funcnameOffset"))?..];
        let functab = &data[offset(7).ok_or_else(|| malformed("pclnOffset"))?..];
        let pairs = nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .filter(|&len| len <= functab.len())
            .ok_or_else(|| malformed("nfunc larger than the function table"))?;
        let table = Self {
            addr: 0,
            magic,
            text_start,
            nfunc,
            funcnames,
            functab,
        };
        // Entries are sorted: a table that is not is not one.
        let mut last = 0;
        for i in 0..=nfunc {
            let entry = u32_at(&functab[..pairs], 8 * i).expect("in bounds");
            if entry < last {
                return Err(malformed("function table not sorted"));
            }
            last = entry;
        }
        Ok(table)
    }

    fn at(self, addr: u64) -> Self {
        Self { addr, ..self }
    }

    /// Virtual address of the header: what `runtime.moduledata` points to.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// `runtime.text`: the base of the entry offsets.
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// True when written by Go 1.20 or later (0xfffffff1).
    pub fn is_go120(&self) -> bool {
        self.magic == MAGIC_GO120
    }

    /// Every function: name, entry and end address, in address order.
    pub fn functions(&self) -> impl Iterator<Item = Result<(&'a [u8], CodeRange), NotTraceable>> {
        (0..self.nfunc).map(move |i| self.function(i))
    }

    /// The code of each named function (exact names), `None` where absent.
    pub fn lookup<const N: usize>(
        &self,
        names: [&str; N],
    ) -> Result<[Option<CodeRange>; N], NotTraceable> {
        let mut found = [None; N];
        for f in self.functions() {
            let (name, range) = f?;
            if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
                found[i].get_or_insert(range);
            }
        }
        Ok(found)
    }

    fn function(&self, i: usize) -> Result<(&'a [u8], CodeRange), NotTraceable> {
        let malformed = |what: &str| NotTraceable::Malformed(format!("pclntab: {what}"));
        // In bounds: parse checked nfunc + 1 pairs.
        let entry_off = u32_at(self.functab, 8 * i).expect("checked");
        let func_off = u32_at(self.functab, 8 * i + 4).expect("checked") as usize;
        let end_off = u32_at(self.functab, 8 * (i + 1)).expect("checked");
        // _func: entryOff uint32, nameOff int32, ...
        let name_off = u32_at(
            self.functab,
            func_off
                .checked_add(4)
                .ok_or_else(|| malformed("funcoff"))?,
        )
        .ok_or_else(|| malformed("_func out of range"))?;
        let name = self
            .funcnames
            .get(name_off as usize..)
            .and_then(|rest| rest.iter().position(|&b| b == 0).map(|n| &rest[..n]))
            .ok_or_else(|| malformed("function name out of range"))?;
        let at = |off: u32| {
            self.text_start
                .checked_add(u64::from(off))
                .ok_or_else(|| malformed("address overflows"))
        };
        let (entry, end) = (at(entry_off)?, at(end_off)?);
        Ok((name, CodeRange { entry, end }))
    }
}

/// `textStart` equals `runtime.text`. A linker that leaves the addends of
/// dynamic relocations out of place writes 0 there in a PIE; then the value is
/// the addend of the relocation of that word; failing that, the start of
/// `.text`, where Go's own linker puts `runtime.text` (an external linker may put
/// C start-up code before it, which is why this is the last resort).
fn text_start_fallback(image: &Image<'_>, table_addr: u64) -> Option<u64> {
    let field = table_addr.checked_add(TEXT_START_AT as u64)?;
    image
        .relative_relocation(field)
        .or_else(|| image.text_start())
}

fn looks_like_header(data: &[u8]) -> bool {
    matches!(u32_at(data, 0), Some(MAGIC_GO118 | MAGIC_GO120))
        && data.get(4..8) == Some(&[0, 0, 1, 8])
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let b = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of named functions at the given text offsets, ending at `end`.
    fn table(magic: u32, text_start: u64, funcs: &[(&str, u32)], end: u32) -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (name, _) in funcs {
            name_offs.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let funcname_off = HEADER_LEN;
        let pcln_off = funcname_off + names.len();
        let mut functab = Vec::new();
        let records_at = 8 * (funcs.len() + 1);
        let mut records = Vec::new();
        for (i, (_, entry)) in funcs.iter().enumerate() {
            functab.extend_from_slice(&entry.to_le_bytes());
            functab.extend_from_slice(&((records_at + records.len()) as u32).to_le_bytes());
            records.extend_from_slice(&entry.to_le_bytes());
            records.extend_from_slice(&name_offs[i].to_le_bytes());
            records.extend_from_slice(&[0; 8]);
        }
        functab.extend_from_slice(&end.to_le_bytes());
        functab.extend_from_slice(&0u32.to_le_bytes());
        let mut b = magic.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0, 1, 8]);
        let offsets = [
            funcs.len() as u64,
            0,
            text_start,
            funcname_off as u64,
            pcln_off as u64,
            pcln_off as u64,
            pcln_off as u64,
            pcln_off as u64,
        ];
        for w in offsets {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&names);
        b.extend_from_slice(&functab);
        b.extend_from_slice(&records);
        b
    }

    const FUNCS: [(&str, u32); 3] = [
        ("main.a", 0),
        ("net/http.(*Transport).roundTrip", 0x40),
        ("main.c", 0x100),
    ];

    #[test]
    fn finds_functions_and_their_ends() {
        for magic in [MAGIC_GO118, MAGIC_GO120] {
            let b = table(magic, 0x40_1000, &FUNCS, 0x180);
            let t = Pclntab::parse(&b, || None).unwrap();
            let [rt, c, missing] = t
                .lookup(["net/http.(*Transport).roundTrip", "main.c", "main.b"])
                .unwrap();
            assert_eq!(
                rt,
                Some(CodeRange {
                    entry: 0x40_1040,
                    end: 0x40_1100
                })
            );
            assert_eq!(
                c,
                Some(CodeRange {
                    entry: 0x40_1100,
                    end: 0x40_1180
                })
            );
            assert_eq!(missing, None);
            assert_eq!(t.functions().count(), 3);
        }
    }

    #[test]
    fn zero_text_start_asks_the_fallback() {
        let b = table(MAGIC_GO120, 0, &FUNCS, 0x180);
        let t = Pclntab::parse(&b, || Some(0x1000)).unwrap();
        let [a] = t.lookup(["main.a"]).unwrap();
        assert_eq!(a.unwrap().entry, 0x1000);
        assert!(matches!(
            Pclntab::parse(&b, || None),
            Err(NotTraceable::Malformed(_))
        ));
    }

    #[test]
    fn old_magics_are_unsupported_versions() {
        for magic in [0xffff_fffb_u32, 0xffff_fffa] {
            let b = table(magic, 0x40_1000, &FUNCS, 0x180);
            match Pclntab::parse(&b, || None) {
                Err(NotTraceable::UnsupportedVersion(v)) => assert!(v.contains("magic")),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("parsed"),
            }
        }
    }

    #[test]
    fn unsorted_table_is_malformed() {
        let funcs = [("a", 0x10), ("b", 0)];
        let b = table(MAGIC_GO120, 0x1000, &funcs, 0x20);
        assert!(matches!(
            Pclntab::parse(&b, || None),
            Err(NotTraceable::Malformed(_))
        ));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_result() {
        let b = table(MAGIC_GO120, 0x40_1000, &FUNCS, 0x180);
        for len in 0..b.len() {
            if let Ok(t) = Pclntab::parse(&b[..len], || None) {
                let _ = t.lookup(["main.c"]);
            }
        }
    }

    /// A real table cut at every length up to the end of its function table
    /// (where a cut fails early), then at spaced lengths and at each of the
    /// last 512 (where a cut leaves names or records out of range).
    #[test]
    fn every_truncation_of_a_real_table_is_an_error_or_a_result() {
        let go = glob::glob("/usr/lib/go-*/bin/go")
            .expect("pattern")
            .filter_map(Result::ok)
            .next()
            .expect("no Go toolchain under /usr/lib/go-*: `cargo xtask setup` installs golang-go");
        let bytes = std::fs::read(&go).unwrap();
        let image = Image::parse(&bytes).unwrap();
        let data = image.section(".gopclntab").expect(".gopclntab").data;
        let full = Pclntab::parse(data, || None).unwrap();
        let names = ["net/http.(*Transport).roundTrip", "runtime.main", "no.such"];
        let [rt, main, none] = full.lookup(names).unwrap();
        assert!(rt.is_some() && main.is_some() && none.is_none());
        let table_end = data.len() - full.functab.len() + 8 * (full.nfunc + 1);
        let spaced = (table_end..data.len()).step_by(16_411);
        let tail = data.len().saturating_sub(512)..data.len();
        for len in (0..table_end).chain(spaced).chain(tail) {
            if let Ok(t) = Pclntab::parse(&data[..len], || None) {
                let _ = t.lookup(names);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn damaged_tables_never_panic(
            at in 0usize..400,
            value in proptest::prelude::any::<u8>(),
            len in 0usize..400,
        ) {
            let mut b = table(MAGIC_GO120, 0x40_1000, &FUNCS, 0x180);
            if let Some(byte) = b.get_mut(at) {
                *byte = value;
            }
            b.truncate(len.max(8));
            if let Ok(t) = Pclntab::parse(&b, || None) {
                let _ = t.lookup(["main.c", "net/http.(*Transport).roundTrip"]);
            }
        }
    }
}
