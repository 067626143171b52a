//! `gobin` against the truth, for every Go toolchain installed under
//! /usr/lib/go-*: the offsets table against the DWARF of a program built by that
//! toolchain, the pclntab reader against its symbol table, error type names
//! against its itab symbols, and `inspect_file` on the toolchain's own stripped
//! `go` command (whose prologue at the found entry proves the entry right).
//!
//! The programs are built offline from tests/testdata/gohttp into
//! CARGO_TARGET_TMPDIR, with a Go build cache kept there between runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use gomod_trace::gobin::{self, H2_ROUND_TRIP, H2_ROUND_TRIP_INNER, NotTraceable, PERSIST_CONN_ROUND_TRIP, ROUND_TRIP};
use gomod_trace_ebpf::GoOffsets;
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

/// An installed toolchain: its minor release ("1.23") and its `go` command.
#[derive(Clone, Debug)]
struct Toolchain {
    release: String,
    go: PathBuf,
}

/// Every /usr/lib/go-*/bin/go. Go 1.19 and 1.23 are what `cargo xtask setup`
/// installs; CI images carry 1.21 and 1.22 as well, and must.
fn toolchains() -> Vec<Toolchain> {
    let mut found: Vec<Toolchain> = glob::glob("/usr/lib/go-*/bin/go")
        .expect("glob pattern")
        .filter_map(Result::ok)
        .filter_map(|go| {
            let dir = go.parent()?.parent()?.file_name()?.to_str()?;
            let release = dir.strip_prefix("go-")?.to_string();
            Some(Toolchain { release, go })
        })
        .collect();
    found.sort_by_key(|t| minor(&t.release));
    let have: Vec<&str> = found.iter().map(|t| t.release.as_str()).collect();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let required: &[&str] = if ci {
        &["1.19", "1.21", "1.22", "1.23"]
    } else {
        &["1.19", "1.23"]
    };
    let missing: Vec<&&str> = required.iter().filter(|r| !have.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "Go toolchains {missing:?} are missing under /usr/lib/go-* (found {have:?}); \
         `cargo xtask setup` installs golang-go (1.19) and golang-1.23-go; \
         CI also needs golang-1.21-go and golang-1.22-go from bookworm-backports"
    );
    found
}

fn minor(release: &str) -> u32 {
    release
        .strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gobin");
    std::fs::create_dir_all(&dir).expect("create test work dir");
    dir
}

/// What a build of the test program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Flavour {
    /// `go build` defaults (static, internal linking), DWARF kept.
    Plain,
    /// `-buildmode=pie`: the pclntab moves to `.data.rel.ro.gopclntab` and the
    /// type data to `.data.rel.ro`.
    Pie,
    /// `-buildmode=pie` linked by the C linker (cgo on): no section of its own
    /// is left for the pclntab, only a symbol (and nothing once stripped).
    ExternalPie,
}

/// Builds tests/testdata/gohttp with `tc`, once per test process and flavour.
fn built(tc: &Toolchain, flavour: Flavour) -> PathBuf {
    type Slot = Arc<Mutex<Option<PathBuf>>>;
    static BUILDS: OnceLock<Mutex<HashMap<(String, Flavour), Slot>>> = OnceLock::new();
    let slot = BUILDS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry((tc.release.clone(), flavour))
        .or_default()
        .clone();
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = &*slot {
        return path.clone();
    }
    let work = work_dir();
    let out = work.join(format!("gohttp-{}-{flavour:?}", tc.release));
    let partial = work.join(format!(
        "gohttp-{}-{flavour:?}.{}",
        tc.release,
        std::process::id()
    ));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/gohttp");
    let mut cmd = Command::new(&tc.go);
    cmd.current_dir(&src)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &work)
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOENV", "off")
        .arg("build");
    match flavour {
        Flavour::Plain => cmd
            .env("CGO_ENABLED", "0")
            .arg("-ldflags=-compressdwarf=false"),
        Flavour::Pie => cmd
            .env("CGO_ENABLED", "0")
            .args(["-buildmode=pie", "-ldflags=-compressdwarf=false"]),
        Flavour::ExternalPie => cmd
            .env("CGO_ENABLED", "1")
            .args(["-buildmode=pie", "-ldflags=-linkmode=external"]),
    };
    cmd.arg("-o").arg(&partial).arg(".");
    let started = Instant::now();
    let output = cmd.output().expect("run go build");
    assert!(
        output.status.success(),
        "{} build of {} failed:\n{}",
        tc.go.display(),
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &out).expect("move the built program into place");
    eprintln!(
        "built {} with go {} ({flavour:?}) in {:.1?}",
        out.display(),
        tc.release,
        started.elapsed()
    );
    *slot = Some(out.clone());
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// --- a. the offsets table against DWARF -----------------------------------------

/// Struct members by struct name, then member name: (offset, member type name).
type Structs = HashMap<String, HashMap<String, (u64, String)>>;

/// Structs the probes read, plus the headers they assume.
const STRUCTS: [&str; 19] = [
    // The error types whose text the probes read (goerrors::MESSAGE_FIRST).
    "errors.errorString",
    "fmt.wrapError",
    "fmt.wrapErrors",
    "net/http.httpError",
    "net/http.timeoutError",
    "net/http.http2httpError",
    "crypto/tls.RecordHeaderError",
    "net/http.Request",
    "net/url.URL",
    "net/http.Response",
    "net/http.persistConn",
    "net/http.http2ClientConn",
    "crypto/tls.Conn",
    "net.conn",
    "net.netFD",
    "internal/poll.FD",
    "string",
    "runtime.iface",
    "[]uint8",
];

/// The members and sizes of `STRUCTS` in the DWARF of `bytes`.
fn dwarf_structs(bytes: &[u8]) -> (Structs, HashMap<String, u64>) {
    let file = object::File::parse(bytes).expect("parse ELF");
    let load = |id: gimli::SectionId| -> Result<gimli::EndianSlice<'_, gimli::LittleEndian>, ()> {
        let data = file
            .section_by_name(id.name())
            .map(|s| s.data().expect("section data"))
            .unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(data, gimli::LittleEndian))
    };
    let dwarf = gimli::Dwarf::load(load).unwrap();
    // Go's DWARF refers to types across units: name every entry by its
    // .debug_info offset first.
    let mut names: HashMap<usize, String> = HashMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().unwrap() {
        let unit = dwarf.unit(header).unwrap();
        let mut entries = unit.entries();
        while let Some(entry) = entries.next_dfs().unwrap() {
            if let Some(v) = entry.attr_value(gimli::DW_AT_name)
                && let Ok(name) = dwarf.attr_string(&unit, v)
                && let Some(at) = entry.offset().to_debug_info_offset(&unit.header)
            {
                names.insert(at.0, name.to_string_lossy().into_owned());
            }
        }
    }
    let mut structs: Structs = HashMap::new();
    let mut sizes = HashMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().unwrap() {
        let unit = dwarf.unit(header).unwrap();
        let name_of = |e: &gimli::DebuggingInformationEntry<_>| -> Option<String> {
            let at = e.offset().to_debug_info_offset(&unit.header)?;
            names.get(&at.0).cloned()
        };
        let type_name = |e: &gimli::DebuggingInformationEntry<_>| -> String {
            let at = match e.attr_value(gimli::DW_AT_type) {
                Some(gimli::AttributeValue::UnitRef(off)) => off.to_debug_info_offset(&unit.header),
                Some(gimli::AttributeValue::DebugInfoRef(off)) => Some(off),
                _ => None,
            };
            at.and_then(|at| names.get(&at.0).cloned())
                .unwrap_or_default()
        };
        let mut entries = unit.entries();
        // The struct being read and the depth of its members.
        let mut current: Option<(String, isize)> = None;
        while let Some(entry) = entries.next_dfs().unwrap() {
            let depth = entry.depth();
            if let Some((name, member_depth)) = &current {
                if depth == *member_depth && entry.tag() == gimli::DW_TAG_member {
                    let member = name_of(entry).expect("member name");
                    let offset = match entry.attr_value(gimli::DW_AT_data_member_location) {
                        Some(v) => v.udata_value().expect("constant member offset"),
                        None => panic!("{name}.{member} has no offset"),
                    };
                    let ty = type_name(entry);
                    structs.get_mut(name).unwrap().insert(member, (offset, ty));
                    continue;
                }
                if depth < *member_depth {
                    current = None;
                }
            }
            if entry.tag() == gimli::DW_TAG_structure_type
                && let Some(name) = name_of(entry)
                && STRUCTS.contains(&name.as_str())
                && !structs.contains_key(&name)
            {
                let size = entry
                    .attr_value(gimli::DW_AT_byte_size)
                    .and_then(|v| v.udata_value())
                    .expect("struct size");
                sizes.insert(name.clone(), size);
                structs.insert(name.clone(), HashMap::new());
                current = Some((name, depth + 1));
            }
        }
    }
    (structs, sizes)
}

fn member(structs: &Structs, ty: &str, field: &str) -> u32 {
    let fields = structs
        .get(ty)
        .unwrap_or_else(|| panic!("struct {ty} not in the DWARF"));
    let (offset, _) = fields
        .get(field)
        .unwrap_or_else(|| panic!("{ty} has no field {field}: {:?}", fields.keys()));
    u32::try_from(*offset).unwrap()
}

/// The offsets the DWARF says, in the table's shape.
fn offsets_from_dwarf(structs: &Structs) -> GoOffsets {
    let m = |ty, field| member(structs, ty, field);
    GoOffsets {
        request_method: m("net/http.Request", "Method"),
        request_url: m("net/http.Request", "URL"),
        url_scheme: m("net/url.URL", "Scheme"),
        url_host: m("net/url.URL", "Host"),
        url_path: m("net/url.URL", "Path"),
        url_raw_query: m("net/url.URL", "RawQuery"),
        response_status_code: m("net/http.Response", "StatusCode"),
        response_proto_major: m("net/http.Response", "ProtoMajor"),
        response_proto_minor: m("net/http.Response", "ProtoMinor"),
        persist_conn_conn: m("net/http.persistConn", "conn"),
        persist_conn_tls_state: m("net/http.persistConn", "tlsState"),
        h2_client_conn_tconn: m("net/http.http2ClientConn", "tconn"),
        tls_conn_conn: m("crypto/tls.Conn", "conn"),
        net_conn_fd: m("net.conn", "fd"),
        net_fd_sysfd: m("net.netFD", "pfd") + m("internal/poll.FD", "Sysfd"),
        _pad: 0,
    }
}

/// The types of the fields the probes read, as the probes assume them.
fn assert_field_types(structs: &Structs, release: &str) {
    let expect = [
        ("net/http.Request", "Method", "string"),
        ("net/http.Request", "URL", "*net/url.URL"),
        ("net/url.URL", "Scheme", "string"),
        ("net/url.URL", "Host", "string"),
        ("net/url.URL", "Path", "string"),
        ("net/url.URL", "RawQuery", "string"),
        ("net/http.Response", "StatusCode", "int"),
        ("net/http.Response", "ProtoMajor", "int"),
        ("net/http.Response", "ProtoMinor", "int"),
        ("net/http.persistConn", "conn", "net.Conn"),
        (
            "net/http.persistConn",
            "tlsState",
            "*crypto/tls.ConnectionState",
        ),
        ("net/http.http2ClientConn", "tconn", "net.Conn"),
        ("crypto/tls.Conn", "conn", "net.Conn"),
        ("net.conn", "fd", "*net.netFD"),
        ("net.netFD", "pfd", "internal/poll.FD"),
        ("internal/poll.FD", "Sysfd", "int"),
    ];
    for (ty, field, want) in expect {
        let (_, got) = &structs[ty][field];
        assert_eq!(got, want, "go {release}: type of {ty}.{field}");
    }
    // An error whose text the decoder trusts starts with a string (its message).
    let message_first = [
        ("*errors.errorString", "errors.errorString"),
        ("*fmt.wrapError", "fmt.wrapError"),
        ("*fmt.wrapErrors", "fmt.wrapErrors"),
        ("*http.httpError", "net/http.httpError"),
        ("*http.timeoutError", "net/http.timeoutError"),
        ("*http.http2httpError", "net/http.http2httpError"),
        ("tls.RecordHeaderError", "crypto/tls.RecordHeaderError"),
    ];
    assert_eq!(
        message_first.map(|(runtime, _)| runtime),
        gomod_trace::goerrors::MESSAGE_FIRST,
        "every type the decoder trusts is checked here"
    );
    // Releases rename some (1.23's timeoutError was httpError), so a type may be
    // missing from one; the two every program has may not.
    assert!(structs.contains_key("errors.errorString") && structs.contains_key("fmt.wrapError"), "go {release}");
    for (runtime, dwarf) in message_first {
        let Some(fields) = structs.get(dwarf) else { continue };
        // (A zero-size `_ incomparable` may share offset 0.)
        let starts_with_string = fields.values().any(|(offset, ty)| *offset == 0 && ty == "string");
        assert!(starts_with_string, "go {release}: {runtime} does not start with its message: {fields:?}");
    }
}

/// Go strings are (ptr, len), interfaces (itab, data), slices (ptr, len, cap):
/// what the probes read a string or an interface's data word with.
fn assert_headers(structs: &Structs, sizes: &HashMap<String, u64>, release: &str) {
    let layout = |ty: &str| -> BTreeMap<u64, String> {
        structs[ty]
            .iter()
            .map(|(name, (off, _))| (*off, name.clone()))
            .collect()
    };
    let fields = |pairs: &[(u64, &str)]| -> BTreeMap<u64, String> {
        pairs.iter().map(|(o, n)| (*o, n.to_string())).collect()
    };
    assert_eq!(sizes["string"], 16, "go {release}: string size");
    assert_eq!(
        layout("string"),
        fields(&[(0, "str"), (8, "len")]),
        "go {release}: string"
    );
    assert_eq!(sizes["runtime.iface"], 16, "go {release}: iface size");
    assert_eq!(
        layout("runtime.iface"),
        fields(&[(0, "tab"), (8, "data")]),
        "go {release}: iface"
    );
    assert_eq!(sizes["[]uint8"], 24, "go {release}: slice size");
    assert_eq!(
        layout("[]uint8"),
        fields(&[(0, "array"), (8, "len"), (16, "cap")]),
        "go {release}: slice"
    );
}

#[test]
fn offsets_table_matches_dwarf_of_every_toolchain() {
    let mut wrong = Vec::new();
    for tc in toolchains() {
        let program = built(&tc, Flavour::Plain);
        let bytes = read(&program);
        let (structs, sizes) = dwarf_structs(&bytes);
        assert_headers(&structs, &sizes, &tc.release);
        assert_field_types(&structs, &tc.release);
        let want = offsets_from_dwarf(&structs);
        let inspection = gobin::inspect(&bytes)
            .unwrap_or_else(|e| panic!("inspect go {} test program: {e}", tc.release));
        eprintln!(
            "go {} ({}): DWARF says {want:?}",
            tc.release, inspection.go_version
        );
        if inspection.offsets != want {
            wrong.push(format!(
                "go {}: table {:?}\n  DWARF {want:?}",
                tc.release, inspection.offsets
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "offsets table differs from DWARF:\n{}",
        wrong.join("\n")
    );
}

// --- b. the pclntab reader against the symbol table ---------------------------

/// File offset of a virtual address in the section that holds it.
fn file_offset(file: &object::File<'_>, vaddr: u64) -> u64 {
    let section = file
        .sections()
        .find(|s| (s.address()..s.address() + s.size()).contains(&vaddr))
        .unwrap_or_else(|| panic!("no section holds {vaddr:#x}"));
    let (start, _) = section.file_range().expect("section has file contents");
    start + (vaddr - section.address())
}

fn check_pclntab_against_symbols(program: &Path, what: &str) {
    let bytes = read(program);
    let file = object::File::parse(&*bytes).unwrap();
    let listed = gobin::functions(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut by_name: HashMap<&str, Vec<u64>> = HashMap::new();
    for (name, entry) in &listed {
        by_name.entry(name).or_default().push(*entry);
    }
    let (mut same, mut text_symbols) = (0, 0);
    let mut wrong = Vec::new();
    for sym in file.symbols().filter(|s| s.kind() == SymbolKind::Text) {
        let Ok(name) = sym.name() else { continue };
        text_symbols += 1;
        let Some(entries) = by_name.get(name) else {
            continue;
        };
        if entries.contains(&sym.address()) {
            same += 1;
        } else {
            wrong.push(format!(
                "{name}: symtab {:#x}, pclntab {entries:x?}",
                sym.address()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{what}: entries differ:\n{}",
        wrong.join("\n")
    );
    assert!(
        same >= 1000 && same * 10 >= text_symbols * 9,
        "{what}: only {same} of {text_symbols} function symbols are in the pclntab"
    );
    let inspection = gobin::inspect(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    for f in [
        &inspection.round_trip,
        &inspection.persist_conn_round_trip,
        &inspection.h2_round_trip,
    ] {
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok(f.name))
            .unwrap_or_else(|| panic!("{what}: no symbol {}", f.name));
        assert_eq!(
            f.entry,
            file_offset(&file, sym.address()),
            "{what}: {}",
            f.name
        );
    }
    assert_eq!(inspection.round_trip.name, ROUND_TRIP);
    assert_eq!(
        inspection.persist_conn_round_trip.name,
        PERSIST_CONN_ROUND_TRIP
    );
    // Go 1.23 made RoundTrip a wrapper of roundTrip, inlined where it is called.
    let h2 = if file.symbols().any(|s| s.name() == Ok(H2_ROUND_TRIP_INNER)) { H2_ROUND_TRIP_INNER } else { H2_ROUND_TRIP };
    assert_eq!(inspection.h2_round_trip.name, h2);
    assert!(!inspection.round_trip.returns.is_empty(), "{what}: no RET");
    eprintln!("{what}: {same} of {text_symbols} function symbols checked");
}

#[test]
fn pclntab_entries_match_the_symbol_table() {
    let all = toolchains();
    for tc in &all {
        let program = built(tc, Flavour::Plain);
        check_pclntab_against_symbols(&program, &format!("go {}", tc.release));
    }
    // Position-independent: the table is `.data.rel.ro.gopclntab` there, or
    // only the symbol `runtime.pclntab` when the C linker linked it.
    let newest = all.last().expect("a toolchain");
    for flavour in [Flavour::Pie, Flavour::ExternalPie] {
        let program = built(newest, flavour);
        check_pclntab_against_symbols(&program, &format!("go {} {flavour:?}", newest.release));
    }
}

// --- c. the toolchains' own stripped go commands -------------------------------

/// Go's stack check: `cmp rsp, [r14+0x10]` (g.stackguard0), or for a large
/// frame `lea r12, [rsp-N]` then `cmp r12, [r14+0x10]`.
fn assert_stack_check(code: &[u8], what: &str) {
    let mut decoder = Decoder::new(64, code, DecoderOptions::NONE);
    let first = decoder.decode();
    assert!(
        !first.is_invalid(),
        "{what}: first instruction does not decode"
    );
    let is_check = |i: &iced_x86::Instruction| {
        i.mnemonic() == Mnemonic::Cmp
            && i.op1_kind() == OpKind::Memory
            && i.memory_base() == Register::R14
            && i.memory_displacement64() == 0x10
    };
    if is_check(&first) {
        assert_eq!(
            first.op0_register(),
            Register::RSP,
            "{what}: {:?}",
            first.code()
        );
        return;
    }
    assert!(
        first.mnemonic() == Mnemonic::Lea && first.memory_base() == Register::RSP,
        "{what}: prologue starts with {:?}",
        first.code()
    );
    let second = decoder.decode();
    assert!(
        is_check(&second),
        "{what}: prologue goes on with {:?}",
        second.code()
    );
    assert_eq!(
        second.op0_register(),
        first.op0_register(),
        "{what}: {:?}",
        second.code()
    );
}

/// The stripped, externally linked PIE keeps no name for its pclntab: the
/// reader finds it by its header, and must agree with the unstripped file.
#[test]
fn finds_the_pclntab_of_a_stripped_external_pie_by_its_header() {
    let newest = toolchains().pop().expect("a toolchain");
    let program = built(&newest, Flavour::ExternalPie);
    let bytes = read(&program);
    let file = object::File::parse(&*bytes).unwrap();
    assert!(file.section_by_name(".gopclntab").is_none());
    assert!(file.section_by_name(".data.rel.ro.gopclntab").is_none());
    let stripped = program.with_extension(format!("stripped.{}", std::process::id()));
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&program)
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip {}", program.display());
    let stripped_bytes = read(&stripped);
    std::fs::remove_file(&stripped).unwrap();
    let want = gobin::inspect(&bytes).unwrap_or_else(|e| panic!("unstripped: {e}"));
    let got = gobin::inspect(&stripped_bytes).unwrap_or_else(|e| panic!("stripped: {e}"));
    // Stripping leaves the loaded part of the file where it was.
    assert_eq!(got, want);
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(ROUND_TRIP))
        .expect("symbol");
    assert_eq!(want.round_trip.entry, file_offset(&file, sym.address()));
    assert_stack_check(&bytes[want.round_trip.entry as usize..], "external PIE");
}

#[test]
fn inspects_every_installed_go_command() {
    for tc in toolchains() {
        let started = Instant::now();
        let inspection =
            gobin::inspect_file(&tc.go).unwrap_or_else(|e| panic!("{}: {e}", tc.go.display()));
        eprintln!(
            "{}: {} in {:.1?}, round trip at {:#x} with {} RETs",
            tc.go.display(),
            inspection.go_version,
            started.elapsed(),
            inspection.round_trip.entry,
            inspection.round_trip.returns.len()
        );
        let v = &inspection.go_version;
        assert!(
            v == &format!("go{}", tc.release) || v.starts_with(&format!("go{}.", tc.release)),
            "{}: version {v}",
            tc.go.display()
        );
        let bytes = read(&tc.go);
        let file = object::File::parse(&*bytes).unwrap();
        let text = file.section_by_name(".text").expect(".text");
        let (text_start, text_len) = text.file_range().unwrap();
        let in_text = |off: u64| (text_start..text_start + text_len).contains(&off);
        assert!(!inspection.round_trip.returns.is_empty());
        for f in [
            &inspection.round_trip,
            &inspection.persist_conn_round_trip,
            &inspection.h2_round_trip,
        ] {
            let what = format!("{} {}", tc.go.display(), f.name);
            assert!(
                in_text(f.entry),
                "{what}: entry {:#x} outside .text",
                f.entry
            );
            assert_stack_check(&bytes[f.entry as usize..], &what);
            // The entry probe sits just after the check: on the frame pointer's
            // push since Go 1.21, on `sub rsp, N` (48 81 ec / 48 83 ec) before.
            assert!(f.probe > f.entry && f.probe - f.entry <= 18, "{what}: probe at {:#x}", f.probe);
            let at = &bytes[f.probe as usize..f.probe as usize + 3];
            assert!(at[0] == 0x55 || at[..2] == [0x48, 0x81] || at[..2] == [0x48, 0x83], "{what}: {at:02x?} at {:#x}", f.probe);
            for &ret in &f.returns {
                assert!(in_text(ret) && ret > f.entry, "{what}: RET at {ret:#x}");
                assert_eq!(bytes[ret as usize], 0xc3, "{what}: RET at {ret:#x}");
            }
        }
    }
}

// --- d. damaged files ----------------------------------------------------------

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            *b = self.next() as u8;
        }
    }
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut garbage = vec![0u8; 1 << 16];
    noise.fill(&mut garbage);
    assert!(matches!(
        gobin::inspect(&garbage),
        Err(NotTraceable::NotElf)
    ));
    garbage[..4].copy_from_slice(b"\x7fELF");
    assert!(gobin::inspect(&garbage).is_err());
    assert!(matches!(gobin::inspect(b""), Err(NotTraceable::NotElf)));

    let newest = toolchains().pop().expect("a toolchain");
    let go = &newest.go;
    let good = read(go);
    // Cut anywhere: the section headers at the end go first, and with them
    // every way to find the tables.
    for i in 0..64u64 {
        let len = (good.len() as u64 * i / 64) as usize;
        assert!(
            gobin::inspect(&good[..len]).is_err(),
            "{} cut at {len}",
            go.display()
        );
    }
    // Overwrite a window with noise at 256 places (the headers, the build info,
    // the pclntab and the code all get hit); any outcome but a panic is fine.
    let mut damaged = good.clone();
    for i in 0..256u64 {
        let at = (good.len() as u64 * i / 256) as usize;
        let end = (at + 4096).min(good.len());
        damaged[at..end].copy_from_slice(&good[at..end]);
        let _ = gobin::inspect(&damaged);
        noise.fill(&mut damaged[at..end]);
        let _ = gobin::inspect(&damaged);
        damaged[at..end].copy_from_slice(&good[at..end]);
    }
    // Small damage spread over the pclntab: single bytes set to noise.
    let file = object::File::parse(&*good).unwrap();
    let pclntab = file.section_by_name(".gopclntab").expect(".gopclntab");
    let (start, len) = pclntab.file_range().unwrap();
    for _ in 0..512 {
        let at = (start + noise.next() % len) as usize;
        damaged[at] = noise.next() as u8;
        let _ = gobin::inspect(&damaged);
        damaged[at] = good[at];
    }
}

// --- error type names from itabs -----------------------------------------------

/// What `%T` prints for a type named in a linker symbol: package paths cut to
/// their last element ("*net/http.httpError" → "*http.httpError"). None for
/// names this simple rule does not cover (generics, literals, versioned paths).
fn go_type_string(linker_name: &str) -> Option<String> {
    if linker_name.contains(['[', '(', '{', ' ', ';']) || linker_name.contains("/v2.") {
        return None;
    }
    let stars = linker_name.len() - linker_name.trim_start_matches('*').len();
    let qualified = &linker_name[stars..];
    let short = qualified.rsplit('/').next()?;
    Some(format!("{}{short}", &linker_name[..stars]))
}

fn check_error_itabs(program: &Path, what: &str) {
    let bytes = read(program);
    let file = object::File::parse(&*bytes).unwrap();
    let symbol = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{what}: no symbol {name}"))
            .address()
    };
    // The layout this module reads moduledata with, against the symbols.
    let (types, etypes, md) = (
        symbol("runtime.types"),
        symbol("runtime.etypes"),
        symbol("runtime.firstmoduledata"),
    );
    let words: Vec<u64> = (0..40)
        .map(|i| {
            let at = file_offset(&file, md + 8 * i) as usize;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
        })
        .collect();
    let types_at = words
        .iter()
        .position(|&w| w == types)
        .expect("types in moduledata");
    assert_eq!(words[types_at + 1], etypes, "{what}: etypes follows types");
    assert!(
        types_at == 35 || types_at == 37,
        "{what}: moduledata.types is word {types_at}"
    );

    let (mut named, mut skipped) = (0, 0);
    let mut wrong = Vec::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(ty) = name
            .strip_prefix("go:itab.")
            .or_else(|| name.strip_prefix("go.itab."))
            .and_then(|rest| rest.strip_suffix(",error"))
        else {
            continue;
        };
        let Some(want) = go_type_string(ty) else {
            skipped += 1;
            continue;
        };
        let got = gobin::error_type_name(&bytes, sym.address());
        if got.as_deref() == Some(want.as_str()) {
            named += 1;
        } else {
            wrong.push(format!("{name}: {got:?}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
    assert!(named >= 20, "{what}: only {named} error itabs");
    for (addr, why) in [
        (0, "null"),
        (0x00c0_0001_0000, "heap"),
        (types, "not an itab"),
        (symbol("runtime.text"), "code"),
    ] {
        let got = gobin::error_type_name(&bytes, addr);
        assert!(
            got.is_none() || why == "not an itab",
            "{what}: {why} gave {got:?}"
        );
    }
    eprintln!("{what}: {named} error itabs named ({skipped} skipped)");
}

#[test]
fn error_itabs_name_their_types() {
    let all = toolchains();
    for tc in &all {
        check_error_itabs(&built(tc, Flavour::Plain), &format!("go {}", tc.release));
    }
    let newest = all.last().expect("a toolchain");
    for flavour in [Flavour::Pie, Flavour::ExternalPie] {
        let program = built(newest, flavour);
        check_error_itabs(&program, &format!("go {} {flavour:?}", newest.release));
    }
}
