//! Checks the perfetto export (being built, issue 14).
