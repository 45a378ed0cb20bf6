//! Checks on free text, shared by all message types.

use super::InvalidMessage;

/// Whether a field may span lines. One-line fields end up in lists, subject
/// lines and file names, where a newline or escape sequence could forge
/// another entry; bodies are shown as documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    One,
    Many,
}

fn allowed_control(c: char) -> bool {
    matches!(c, '\n' | '\t' | '\r')
}

/// Required text: not blank, at most `max` bytes, no control characters
/// (in [`Lines::Many`] fields, newline, tab and carriage return are allowed).
pub(crate) fn required(
    field: &'static str,
    s: &str,
    max: usize,
    lines: Lines,
) -> Result<(), InvalidMessage> {
    if s.trim().is_empty() {
        return Err(InvalidMessage::Empty { field });
    }
    bounded(field, s, max, lines)
}

/// Optional text: absent, or as [`required`]. `Some("")` is rejected so
/// that "no value" has a single encoding.
pub(crate) fn optional(
    field: &'static str,
    s: Option<&str>,
    max: usize,
    lines: Lines,
) -> Result<(), InvalidMessage> {
    match s {
        None => Ok(()),
        Some(s) => required(field, s, max, lines),
    }
}

fn bounded(field: &'static str, s: &str, max: usize, lines: Lines) -> Result<(), InvalidMessage> {
    if s.len() > max {
        return Err(InvalidMessage::TooLong {
            field,
            max,
            len: s.len(),
        });
    }
    let bad = |c: char| c.is_control() && !(lines == Lines::Many && allowed_control(c));
    if s.chars().any(bad) {
        return Err(InvalidMessage::ControlCharacter { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_empty() {
        assert_eq!(
            required("subject", " \t", 10, Lines::One),
            Err(InvalidMessage::Empty { field: "subject" })
        );
        assert!(optional("note", Some(""), 10, Lines::Many).is_err());
        assert!(optional("note", None, 10, Lines::Many).is_ok());
    }

    #[test]
    fn length_is_in_bytes() {
        // "é" is two bytes.
        assert!(required("x", "éé", 4, Lines::One).is_ok());
        assert_eq!(
            required("x", "ééé", 4, Lines::One),
            Err(InvalidMessage::TooLong {
                field: "x",
                max: 4,
                len: 6
            })
        );
    }

    #[test]
    fn controls() {
        assert!(required("b", "a\nb\tc\r\n", 100, Lines::Many).is_ok());
        assert!(required("s", "a\nb", 100, Lines::One).is_err());
        assert!(required("s", "a\tb", 100, Lines::One).is_err());
        for bad in ["a\0b", "a\x1bb", "a\x7fb", "a\u{85}b"] {
            assert_eq!(
                required("b", bad, 100, Lines::Many),
                Err(InvalidMessage::ControlCharacter { field: "b" }),
                "{bad:?}"
            );
        }
    }
}
