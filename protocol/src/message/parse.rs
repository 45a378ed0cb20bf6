//! The error and helpers shared by every `FromStr` of a CLI-style value.

use super::limits::MAX_NAME_BYTES;

/// How many characters of a rejected input an error repeats: enough to
/// recognise it, not enough to flood a terminal or a log.
const MAX_GIVEN_CHARS: usize = 64;

/// A string that is not one of the accepted values. The message lists what
/// would have been accepted, so a user at the CLI can correct it at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; valid values: {valid}")]
pub struct ParseValueError {
    pub what: &'static str,
    pub given: String,
    pub valid: String,
}

impl ParseValueError {
    pub(crate) fn new(what: &'static str, given: &str, valid: impl Into<String>) -> Self {
        ParseValueError {
            what,
            given: truncate(given),
            valid: valid.into(),
        }
    }

    /// For enumerations whose valid values are a list of names.
    pub(crate) fn one_of(what: &'static str, given: &str, names: &[&str]) -> Self {
        Self::new(what, given, names.join(", "))
    }
}

pub(crate) fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_GIVEN_CHARS).collect();
    if s.chars().nth(MAX_GIVEN_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Trimmed input, lowercased (ASCII only: keywords are ASCII, and a full
/// Unicode lowercase could turn a non-keyword into one).
pub(crate) fn keyword(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Splits `prefix:TEXT` with a case-insensitive prefix, returning the trimmed
/// text with its case kept. `None` if `s` does not start with the prefix.
pub(crate) fn prefixed<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = s.trim().split_once(':')?;
    head.trim()
        .eq_ignore_ascii_case(prefix)
        .then_some(rest.trim())
}

/// Checks the TEXT of `other:TEXT` / `treaty:NAME` the way
/// [`Body::validate`](super::Body::validate) will, so the CLI fails early.
pub(crate) fn name_text(
    what: &'static str,
    given: &str,
    text: &str,
    valid: &str,
) -> Result<String, ParseValueError> {
    if text.is_empty() || text.len() > MAX_NAME_BYTES || text.chars().any(char::is_control) {
        return Err(ParseValueError::new(
            what,
            given,
            format!("{valid} (TEXT: 1 to {MAX_NAME_BYTES} bytes on one line)"),
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_is_truncated() {
        let long = "x".repeat(1000);
        let e = ParseValueError::new("thing", &long, "a, b");
        assert_eq!(e.given.chars().count(), MAX_GIVEN_CHARS + 1);
        assert!(e.to_string().len() < 200);
    }

    #[test]
    fn display_lists_valid_values() {
        let e = ParseValueError::one_of("colour", "mauve", &["red", "blue"]);
        assert_eq!(
            e.to_string(),
            r#"unknown colour "mauve"; valid values: red, blue"#
        );
    }

    #[test]
    fn prefix_is_case_insensitive_and_keeps_text_case() {
        assert_eq!(prefixed(" Other: Foo Bar ", "other"), Some("Foo Bar"));
        assert_eq!(prefixed("treaty:A:B", "treaty"), Some("A:B"));
        assert_eq!(prefixed("other", "other"), None);
        assert_eq!(prefixed("others:x", "other"), None);
    }
}
