//! Names the error a Go HTTP request ended with. The uprobe at the round trip's
//! return sees an `error` interface: its itab (the dynamic type) and the first
//! string the value holds. The type is looked up in the executable's own type data
//! ([`crate::gobin::error_type_name`]); the string is used only for types whose
//! value starts with their message, and a few message-less types are named by what
//! Go prints for them. Anything else is shown as its type: never a guess.
use std::sync::{Arc, RwLock};

use memmap2::Mmap;

/// The probed Go executables, by the index their uprobes were attached with.
#[derive(Clone, Default)]
pub struct Executables(Arc<RwLock<Vec<Arc<Mmap>>>>);

impl std::fmt::Debug for Executables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.read().map_or(0, |v| v.len());
        write!(f, "Executables({n})")
    }
}

impl Executables {
    /// Files an executable; returns its index.
    pub fn add(&self, image: Arc<Mmap>) -> u32 {
        let mut all = self.0.write().unwrap_or_else(|p| p.into_inner());
        all.push(image);
        (all.len() - 1) as u32
    }

    pub fn len(&self) -> usize {
        self.0.read().map_or(0, |v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the dynamic type behind `itab` in executable `index`.
    pub fn error_type_name(&self, index: u32, itab: u64) -> Option<String> {
        let image = self.0.read().ok()?.get(index as usize)?.clone();
        crate::gobin::error_type_name(&image, itab)
    }
}

/// Types whose value starts with the error's message (a Go string).
/// (`*net.DNSError` is not: Go 1.23 put an error before its message.) Checked
/// against the DWARF of every installed toolchain in tests/gobin.rs.
pub const MESSAGE_FIRST: [&str; 7] = [
    "*errors.errorString",
    "*fmt.wrapError",
    "*fmt.wrapErrors",
    "*http.httpError",
    "*http.timeoutError",
    "*http.http2httpError",
    "tls.RecordHeaderError",
];

/// Types without a message field, by what their `Error()` returns.
const FIXED_MESSAGES: [(&str, &str); 2] = [
    ("context.deadlineExceededError", "context deadline exceeded"),
    ("http.tlsHandshakeTimeoutError", "net/http: TLS handshake timeout"),
];

/// The error as the timeline shows it: its message where the value says it, else
/// its type (`*net.OpError`), else `error of unknown type`.
pub fn describe(type_name: Option<&str>, text: &str, text_cut: bool) -> String {
    let Some(type_name) = type_name else { return "error of unknown type".into() };
    if let Some((_, message)) = FIXED_MESSAGES.iter().find(|(t, _)| *t == type_name) {
        return (*message).to_string();
    }
    if MESSAGE_FIRST.contains(&type_name) && !text.is_empty() {
        let ellipsis = if text_cut { "…" } else { "" };
        return format!("{text}{ellipsis}");
    }
    type_name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_go_prints_them_or_by_type() {
        assert_eq!(describe(Some("context.deadlineExceededError"), "", false), "context deadline exceeded");
        assert_eq!(describe(Some("*errors.errorString"), "unexpected EOF", false), "unexpected EOF");
        assert_eq!(describe(Some("*http.httpError"), "net/http: timeout awaiting response headers", false), "net/http: timeout awaiting response headers");
        assert_eq!(describe(Some("*errors.errorString"), "a long", true), "a long…");
        // A type whose first field is not its message: its text is not trusted.
        assert_eq!(describe(Some("*net.OpError"), "dial", false), "*net.OpError");
        assert_eq!(describe(None, "dial", false), "error of unknown type");
    }
}
