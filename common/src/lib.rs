//! What every fpsync program shares and that is neither the FPC protocol
//! nor a daemon's logic: the logging set-up ([`logging`]), entering a
//! network namespace ([`netns`]), the parsers of durations and sizes
//! ([`units`]), the seeded integer hash ([`hash`]) and the one-line error
//! chain ([`error_chain`]). No module here keeps state beyond a call.

pub mod hash;
pub mod logging;
pub mod netns;
pub mod units;

/// An error and its sources on one line, for the edge of a program (each
/// message says what failed, its source why).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
