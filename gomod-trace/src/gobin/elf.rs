//! The executable as the other readers see it: an x86-64 ELF file whose bytes are
//! found by virtual address or by section name. It only reads headers; it never
//! trusts an offset or a size in them without checking it against the file.

use object::LittleEndian as LE;
use object::elf::{self, FileHeader64, ProgramHeader64, SectionHeader64};
use object::read::elf::{
    FileHeader as _, ProgramHeader as _, Rela as _, SectionHeader as _, SectionTable, Sym as _,
};

use super::NotTraceable;

// Indices into the identification bytes (`e_ident`).
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const EI_NIDENT: usize = 16;

/// A parsed ELF64 little-endian x86-64 file.
pub(crate) struct Image<'a> {
    data: &'a [u8],
    segments: &'a [ProgramHeader64<LE>],
    sections: SectionTable<'a, FileHeader64<LE>, &'a [u8]>,
}

/// A section's address range and, unless it is NOBITS, its bytes.
#[derive(Clone, Copy)]
pub(crate) struct Section<'a> {
    pub addr: u64,
    pub data: &'a [u8],
}

impl<'a> Image<'a> {
    /// Checks the identification bytes first so that the error says what the file
    /// is (not ELF, or ELF for another machine) before anything else is read.
    pub fn parse(data: &'a [u8]) -> Result<Self, NotTraceable> {
        let ident = data.get(..EI_NIDENT).ok_or(NotTraceable::NotElf)?;
        if ident[..4] != elf::ELFMAG {
            return Err(NotTraceable::NotElf);
        }
        // e_machine sits at the same offset (18) in ELF32 and ELF64 headers.
        let machine = match (ident[EI_DATA], data.get(18..20)) {
            (elf::ELFDATA2LSB, Some(m)) => u16::from_le_bytes([m[0], m[1]]),
            (elf::ELFDATA2MSB, Some(m)) => u16::from_be_bytes([m[0], m[1]]),
            _ => return Err(NotTraceable::Malformed("ELF header truncated".into())),
        };
        if machine != elf::EM_X86_64 || ident[EI_CLASS] != elf::ELFCLASS64 {
            return Err(NotTraceable::UnsupportedArch(arch_name(
                machine,
                ident[EI_CLASS],
            )));
        }
        if ident[EI_DATA] != elf::ELFDATA2LSB {
            return Err(NotTraceable::Malformed("big-endian x86-64 ELF".into()));
        }
        let malformed = |what: &str| NotTraceable::Malformed(format!("ELF {what}"));
        let header = FileHeader64::<LE>::parse(data).map_err(|_| malformed("header"))?;
        let segments = header
            .program_headers(LE, data)
            .map_err(|_| malformed("program headers"))?;
        let sections = header
            .sections(LE, data)
            .map_err(|_| malformed("section headers"))?;
        Ok(Self {
            data,
            segments,
            sections,
        })
    }

    /// The first section with this name, if its header is sound.
    pub fn section(&self, name: &str) -> Option<Section<'a>> {
        let (_, sh) = self.sections.section_by_name(LE, name.as_bytes())?;
        self.section_of(sh)
    }

    fn section_of(&self, sh: &'a SectionHeader64<LE>) -> Option<Section<'a>> {
        let data = if sh.sh_type(LE) == elf::SHT_NOBITS {
            &[][..]
        } else {
            sh.data(LE, self.data).ok()?
        };
        Some(Section {
            addr: sh.sh_addr(LE),
            data,
        })
    }

    /// Allocated sections with file contents that are not executable: where Go
    /// keeps its read-only and initialised data.
    pub fn data_sections(&self) -> impl Iterator<Item = Section<'a>> + '_ {
        self.sections.iter().filter_map(|sh| {
            let flags = sh.sh_flags(LE);
            let alloc = flags & u64::from(elf::SHF_ALLOC) != 0;
            let exec = flags & u64::from(elf::SHF_EXECINSTR) != 0;
            if !alloc || exec || sh.sh_type(LE) != elf::SHT_PROGBITS {
                return None;
            }
            self.section_of(sh)
        })
    }

    /// Value of a symbol in `.symtab` (absent in stripped files).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        let symbols = self.sections.symbols(LE, self.data, elf::SHT_SYMTAB).ok()?;
        symbols.iter().find_map(|sym| {
            let found = sym.name(LE, symbols.strings()).ok()? == name.as_bytes();
            found.then(|| sym.st_value.get(LE))
        })
    }

    /// The addend of an `R_X86_64_RELATIVE` dynamic relocation that patches the
    /// word at `vaddr`: the link-time value of a pointer whose file bytes may
    /// have been left zero by a linker that keeps addends out of place.
    pub fn relative_relocation(&self, vaddr: u64) -> Option<u64> {
        self.sections.iter().find_map(|sh| {
            let (relocs, _) = sh.rela(LE, self.data).ok()??;
            relocs.iter().find_map(|r| {
                let hit = r.r_offset(LE) == vaddr && r.r_type(LE, false) == elf::R_X86_64_RELATIVE;
                hit.then(|| r.r_addend(LE) as u64)
            })
        })
    }

    /// File offset of the byte at `vaddr`, through the loadable segment whose
    /// file-backed part holds it (what uprobes attach by).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments.iter().find_map(|ph| {
            if ph.p_type(LE) != elf::PT_LOAD {
                return None;
            }
            let start = ph.p_vaddr(LE);
            let delta = vaddr.checked_sub(start)?;
            (delta < ph.p_filesz(LE)).then(|| ph.p_offset(LE).checked_add(delta))?
        })
    }

    /// `len` bytes of file contents at `vaddr`, if they all lie in one segment's
    /// file-backed part and inside the file.
    pub fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let last = vaddr.checked_add(len.checked_sub(1)? as u64)?;
        let start = self.file_offset(vaddr)?;
        // Both ends in the file image and contiguous: same segment mapping.
        if self.file_offset(last)? != start.checked_add(len as u64 - 1)? {
            return None;
        }
        let start = usize::try_from(start).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    /// The file contents from `vaddr` to the end of the section holding it.
    pub fn tail_at(&self, vaddr: u64) -> Option<&'a [u8]> {
        self.sections.iter().find_map(|sh| {
            let s = self.section_of(sh)?;
            let delta = usize::try_from(vaddr.checked_sub(s.addr)?).ok()?;
            let alloc = sh.sh_flags(LE) & u64::from(elf::SHF_ALLOC) != 0;
            (alloc && delta < s.data.len()).then(|| &s.data[delta..])
        })
    }

    /// Address of the first executable section named `.text`.
    pub fn text_start(&self) -> Option<u64> {
        self.section(".text").map(|s| s.addr)
    }

    /// A little-endian word at `vaddr`.
    pub fn u64_at(&self, vaddr: u64) -> Option<u64> {
        let b = self.bytes_at(vaddr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Whether `vaddr` lies in an executable section.
    pub fn is_code(&self, vaddr: u64) -> bool {
        self.sections.iter().any(|sh| {
            let exec = sh.sh_flags(LE) & u64::from(elf::SHF_EXECINSTR) != 0;
            let start = sh.sh_addr(LE);
            exec && vaddr >= start && vaddr - start < sh.sh_size(LE)
        })
    }
}

/// GOARCH-style name of an ELF machine, for "arm64 unsupported".
fn arch_name(machine: u16, class: u8) -> String {
    let wide = class == elf::ELFCLASS64;
    match machine {
        elf::EM_X86_64 if !wide => "amd64p32".into(),
        elf::EM_386 => "386".into(),
        elf::EM_AARCH64 => "arm64".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_RISCV if wide => "riscv64".into(),
        elf::EM_PPC64 => "ppc64".into(),
        elf::EM_S390 => "s390x".into(),
        elf::EM_LOONGARCH => "loong64".into(),
        elf::EM_MIPS if wide => "mips64".into(),
        elf::EM_MIPS => "mips".into(),
        other => format!("ELF machine {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf() {
        assert!(matches!(Image::parse(b""), Err(NotTraceable::NotElf)));
        assert!(matches!(
            Image::parse(b"#!/bin/sh\necho hello world\n"),
            Err(NotTraceable::NotElf)
        ));
    }

    #[test]
    fn other_machines_are_named() {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(&elf::ELFMAG);
        header[EI_CLASS] = elf::ELFCLASS64;
        header[EI_DATA] = elf::ELFDATA2LSB;
        header[18..20].copy_from_slice(&elf::EM_AARCH64.to_le_bytes());
        match Image::parse(&header) {
            Err(NotTraceable::UnsupportedArch(a)) => assert_eq!(a, "arm64"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("parsed"),
        }
    }

    #[test]
    fn header_only_is_malformed_not_a_panic() {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(&elf::ELFMAG);
        header[EI_CLASS] = elf::ELFCLASS64;
        header[EI_DATA] = elf::ELFDATA2LSB;
        header[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        for len in 0..header.len() {
            let _ = Image::parse(&header[..len]);
        }
        let _ = Image::parse(&header);
    }
}
