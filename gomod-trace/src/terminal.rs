//! Text from outside (argv, host names, a server's words, an answer quoted in an
//! error) made harmless for a terminal: every path that prints such text to a
//! terminal (the text view, the live line, the `builds` list, error messages)
//! goes through [`printable`].

/// Marks that stood for a character that was not printed.
pub const REPLACEMENT: char = '\u{fffd}';

/// Would printing `c` act on the terminal or on how the text reads rather than
/// show a character? C0 and C1 controls and DEL (ESC starts CSI and OSC
/// sequences; U+009B is a one-character CSI), and the bidirectional overrides,
/// embeddings and isolates that reorder what is shown (Trojan Source).
fn acts_on_the_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character that [would act on the terminal](acts_on_the_terminal)
/// replaced by U+FFFD: shown, but inert.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if acts_on_the_terminal(c) {
                REPLACEMENT
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_sequences_and_bidi_never_reach_the_terminal() {
        assert_eq!(printable("a\x1b[2Jb\r\n"), "a\u{fffd}[2Jb\u{fffd}\u{fffd}");
        assert_eq!(printable("\x1b]0;title\x07"), "\u{fffd}]0;title\u{fffd}");
        assert_eq!(printable("x\u{9b}31m\u{7f}"), "x\u{fffd}31m\u{fffd}");
        assert_eq!(
            printable("safe\u{202e}txt.exe\u{2066}"),
            "safe\u{fffd}txt.exe\u{fffd}"
        );
        assert_eq!(
            printable("proxy.example:443 — ünïcode ✓"),
            "proxy.example:443 — ünïcode ✓"
        );
    }
}
