//! Checks the otlp export (being built, issue 14).
