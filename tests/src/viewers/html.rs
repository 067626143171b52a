//! Checks the html export (being built, issue 14).
