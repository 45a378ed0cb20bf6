//! Syntax of an attachment's media type.

use super::error::MediaTypeRule;

/// Longest media type (two RFC 6838 names of 127 characters and a slash).
pub const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// `type "/" subtype`, each an RFC 6838 `restricted-name` (a letter or
/// digit, then up to 126 of letters, digits and `!#$&-^_.+`), in lowercase
/// so that one type has one spelling in a signed manifest, and without
/// parameters: the charset of a document is the document's business.
pub fn check_media_type(s: &str) -> Result<(), MediaTypeRule> {
    if s.len() > MAX_MEDIA_TYPE_BYTES {
        return Err(MediaTypeRule::TooLong {
            len: s.len(),
            max: MAX_MEDIA_TYPE_BYTES,
        });
    }
    let Some((ty, sub)) = s.split_once('/') else {
        return Err(MediaTypeRule::NoSlash);
    };
    restricted_name(ty)?;
    restricted_name(sub)
}

fn restricted_name(part: &str) -> Result<(), MediaTypeRule> {
    let mut chars = part.chars();
    match chars.next() {
        None => return Err(MediaTypeRule::EmptyPart),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return Err(MediaTypeRule::BadCharacter)
        }
        Some(_) => {}
    }
    if part.len() > 127 {
        return Err(MediaTypeRule::PartTooLong);
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&-^_.+".contains(c);
    if chars.all(ok) {
        Ok(())
    } else {
        Err(MediaTypeRule::BadCharacter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for ok in [
            "application/pdf",
            "image/jpeg",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/octet-stream",
            "video/mp4",
            "application/x-iso9660-image",
            "message/rfc822",
        ] {
            assert_eq!(check_media_type(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_media_type("pdf"), Err(MediaTypeRule::NoSlash));
        assert_eq!(check_media_type("/pdf"), Err(MediaTypeRule::EmptyPart));
        assert_eq!(
            check_media_type("application/"),
            Err(MediaTypeRule::EmptyPart)
        );
        assert_eq!(
            check_media_type("Application/PDF"),
            Err(MediaTypeRule::BadCharacter)
        );
        assert_eq!(
            check_media_type("text/plain; charset=utf-8"),
            Err(MediaTypeRule::BadCharacter)
        );
        assert_eq!(check_media_type("a/b/c"), Err(MediaTypeRule::BadCharacter));
        assert_eq!(
            check_media_type("text/\u{0}"),
            Err(MediaTypeRule::BadCharacter)
        );
        assert_eq!(
            check_media_type(&format!("a/{}", "b".repeat(128))),
            Err(MediaTypeRule::PartTooLong)
        );
        assert!(matches!(
            check_media_type(&"a".repeat(300)),
            Err(MediaTypeRule::TooLong { .. })
        ));
    }
}
