//! An error with its causes, for logs and messages: `outer: cause: root cause`.

use std::{error::Error, fmt};

/// Displays an error followed by every [`source`](Error::source) under it, joined with `": "`.
///
/// The errors of bff say what they were doing and keep what went wrong below them as their source
/// (an I/O error, a rustls alert, hyper's error); their own `Display` never repeats it. This is how they
/// are written out where a person reads them: `tracing::warn!(error = %ErrorChain(&e), ...)`.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("calling users")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_written() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received corrupt message",
        ));
        assert_eq!(
            ErrorChain(&e).to_string(),
            "calling users: received corrupt message"
        );
    }
}
