//! Go executables: any binary a build runs is read by the daemon (as root) to
//! place its uprobes. `gobin::inspect`, `gobin::functions` and
//! `gobin::error_type_name` on any bytes return a value or an error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    let _ = gomod_trace::gobin::inspect(file);
    if let Ok(functions) = gomod_trace::gobin::functions(file) {
        // The itab pointers the request probes report are as untrusted as the file.
        for (_, entry) in functions.iter().take(4) {
            let _ = gomod_trace::gobin::error_type_name(file, *entry);
        }
    }
    // An itab address taken from the file's own last bytes.
    if let Some(tail) = file.last_chunk::<8>() {
        let _ = gomod_trace::gobin::error_type_name(file, u64::from_le_bytes(*tail));
    }
});
