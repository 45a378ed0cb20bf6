//! Rules for the sender-supplied name of an attachment.
//!
//! The name is shown to the operator and may be offered as a default file
//! name, so it must be one harmless path component on every system the
//! operator might copy it to: no separators, no `..`, nothing a terminal
//! or a Windows file system would interpret. The node never uses it as a
//! path; these rules are the second line.

use super::error::NameRule;

/// Longest name, in bytes of UTF-8 (the usual file-name limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Device names Windows reserves, with or without an extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Characters Windows forbids in file names (besides the separators).
const WINDOWS_FORBIDDEN: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// Invisible characters that make a name display as another (bidirectional
/// overrides and isolates, zero-width characters, the byte-order mark):
/// `report` U+202E `fdp.exe` shows as `reportexe.pdf`.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// Checks a name against every rule, reporting the first it breaks.
pub fn check_name(name: &str) -> Result<(), NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameRule::TooLong {
            len: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if name.contains(['/', '\\']) {
        return Err(NameRule::Separator);
    }
    if name.contains("..") || name == "." {
        return Err(NameRule::Dots);
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(NameRule::ControlCharacter);
    }
    if name.chars().any(invisible) {
        return Err(NameRule::Invisible);
    }
    if name.contains(WINDOWS_FORBIDDEN) {
        return Err(NameRule::Forbidden);
    }
    if name.trim() != name || name.ends_with('.') {
        return Err(NameRule::Edges);
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err(NameRule::Reserved);
    }
    Ok(())
}

/// A name as it may be printed whatever it contains: control, invisible and
/// non-ASCII-whitespace characters escaped (`\u{202e}`), at most 300 bytes.
/// For error messages about names that failed [`check_name`].
pub fn escaped(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if out.len() >= 300 {
            out.push('…');
            break;
        }
        if c.is_control() || invisible(c) || (c.is_whitespace() && c != ' ') || c == '\\' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "request-letter.pdf",
            "Kontoauszüge 2025.xlsx",
            "IMG_0001.JPG",
            "a",
            "x.tar.gz",
            "console.log",
            "comfy.txt",
            ".hidden",
            "名前.txt",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_name(&"é".repeat(127)), Ok(()));
    }

    #[test]
    fn refuses_paths_and_tricks() {
        let cases: &[(&str, NameRule)] = &[
            ("", NameRule::Empty),
            ("../../etc/passwd", NameRule::Separator),
            ("/etc/passwd", NameRule::Separator),
            ("a/b", NameRule::Separator),
            ("..\\windows", NameRule::Separator),
            ("C:\\x", NameRule::Separator),
            ("..", NameRule::Dots),
            (".", NameRule::Dots),
            ("a..b", NameRule::Dots),
            ("a\0b", NameRule::ControlCharacter),
            ("a\nb", NameRule::ControlCharacter),
            ("a\x1b[2Jb", NameRule::ControlCharacter),
            ("a\u{85}b", NameRule::ControlCharacter),
            ("report\u{202e}fdp.exe", NameRule::Invisible),
            ("a\u{200b}b", NameRule::Invisible),
            ("C:x", NameRule::Forbidden),
            ("what?.txt", NameRule::Forbidden),
            (" lead", NameRule::Edges),
            ("trail ", NameRule::Edges),
            ("trail.", NameRule::Edges),
            ("CON", NameRule::Reserved),
            ("nul.txt", NameRule::Reserved),
            ("Com1.tar.gz", NameRule::Reserved),
            ("lpt9", NameRule::Reserved),
        ];
        for (name, rule) in cases {
            assert_eq!(check_name(name), Err(*rule), "{name:?}");
        }
        assert_eq!(
            check_name(&"é".repeat(128)),
            Err(NameRule::TooLong { len: 256, max: 255 })
        );
    }

    #[test]
    fn escaped_shows_what_is_hidden() {
        assert_eq!(escaped("report\u{202e}fdp.exe"), "report\\u{202e}fdp.exe");
        assert_eq!(escaped("a\nb"), "a\\u{a}b");
        assert_eq!(escaped("ok name.pdf"), "ok name.pdf");
        assert!(escaped(&"x".repeat(10_000)).len() < 310);
    }
}
