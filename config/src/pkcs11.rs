//! `identity_key = "pkcs11:…"`: where an identity key on a hardware token is.
//!
//! The syntax is RFC 7512's PKCS#11 URI, with the attributes a node needs:
//!
//! ```text
//! pkcs11:token=comity;object=comity-identity?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/comity/token.pin
//! ```
//!
//! - path attributes: `token` (the token's label, required), `object` (the
//!   key's label, required), `id` (the key's CKA_ID, optional), `type`
//!   (`private` if given);
//! - query attributes: `module-path` (the PKCS#11 module, required) and
//!   `pin-source` (a file holding the user PIN; without it the PIN comes
//!   from the environment variable [`PIN_ENV`]).
//!
//! `pin-value` is refused: a PIN in the configuration would be readable by
//! whoever can read the configuration, and would end up in its backups.

use std::fmt;
use std::path::PathBuf;

/// The environment variable holding the token's user PIN when the URI has
/// no `pin-source`.
pub const PIN_ENV: &str = "COMITY_PKCS11_PIN";

/// An identity key on a PKCS#11 token. `Debug` and `Display` show the URI,
/// which holds no secret (a PIN is never part of it).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// The token's label (CKA_LABEL of the token, `token=`).
    pub token: String,
    /// The key's label (`object=`).
    pub object: String,
    /// The key's CKA_ID (`id=`), when given.
    pub id: Option<Vec<u8>>,
    /// The PKCS#11 module to load (`module-path=`).
    pub module: PathBuf,
    /// The file holding the user PIN (`pin-source=`), if not [`PIN_ENV`].
    pub pin_file: Option<PathBuf>,
    uri: String,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Why a `pkcs11:` URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenUriError {
    #[error("does not start with \"pkcs11:\"")]
    NotPkcs11,
    #[error("attribute {0:?} is missing")]
    Missing(&'static str),
    #[error("attribute {0:?} appears twice")]
    Duplicate(String),
    #[error(
        "attribute {0:?} is not one Comity uses (token, object, id, type; module-path, pin-source)"
    )]
    Unknown(String),
    /// Names the attribute, never its value (which could be a PIN).
    #[error("the value of {0:?} has a bad percent-encoding or is not UTF-8")]
    BadEncoding(String),
    #[error("attribute {0:?} is empty")]
    Empty(&'static str),
    #[error("type={0:?}: the identity key is a private key (type=private)")]
    BadType(String),
    #[error("a PIN in the configuration (pin-value) is refused: put it in a 0600 file named by pin-source=file:…, or in the environment variable {PIN_ENV}")]
    PinInUri,
    #[error("pin-source must be a file (pin-source=file:/path or an absolute path), got {0:?}")]
    BadPinSource(String),
    #[error("module-path must be an absolute path, got {0:?}")]
    RelativeModule(String),
}

impl TokenKey {
    /// The URI as written (for `comity keys`, logs, the config file).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn parse(text: &str) -> Result<TokenKey, TokenUriError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or(TokenUriError::NotPkcs11)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut id, mut module, mut pin_file) =
            (None, None, None, None, None);
        // Each name is matched before its value is decoded: a malformed
        // pin-value must be refused as a PIN, not quoted as bad encoding.
        let mut kind = None;
        for (name, value) in attributes(path, ';') {
            match name {
                "token" => set(&mut token, value_text(value, name)?, name)?,
                "object" => set(&mut object, value_text(value, name)?, name)?,
                "id" => set(&mut id, decode(value, name)?, name)?,
                "type" => {
                    let t = value_text(value, name)?;
                    if t != "private" {
                        return Err(TokenUriError::BadType(t));
                    }
                    set(&mut kind, (), name)?;
                }
                "pin-value" => return Err(TokenUriError::PinInUri),
                other => return Err(TokenUriError::Unknown(other.to_string())),
            }
        }
        for (name, value) in attributes(query, '&') {
            if name == "pin-value" {
                return Err(TokenUriError::PinInUri);
            }
            let v = value_text(value, name)?;
            match name {
                "module-path" => {
                    if !v.starts_with('/') {
                        return Err(TokenUriError::RelativeModule(v));
                    }
                    set(&mut module, PathBuf::from(v), name)?
                }
                "pin-source" => {
                    let file = v.strip_prefix("file:").unwrap_or(&v);
                    // `file:/p` or `file:///p`; `file://host/p` names
                    // another machine.
                    let file = file
                        .strip_prefix("//")
                        .map_or(Some(file), |rest| rest.starts_with('/').then_some(rest));
                    let Some(file) = file.filter(|f| f.starts_with('/')) else {
                        return Err(TokenUriError::BadPinSource(v));
                    };
                    set(&mut pin_file, PathBuf::from(file), name)?
                }
                other => return Err(TokenUriError::Unknown(other.to_string())),
            }
        }
        Ok(TokenKey {
            token: token.ok_or(TokenUriError::Missing("token"))?,
            object: object.ok_or(TokenUriError::Missing("object"))?,
            id,
            module: module.ok_or(TokenUriError::Missing("module-path"))?,
            pin_file,
            uri: text.to_string(),
        })
    }
}

fn attributes(part: &str, sep: char) -> impl Iterator<Item = (&str, &str)> {
    part.split(sep)
        .filter(|a| !a.is_empty())
        .map(|a| a.split_once('=').unwrap_or((a, "")))
}

fn set<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), TokenUriError> {
    if slot.is_some() {
        return Err(TokenUriError::Duplicate(name.to_string()));
    }
    *slot = Some(v);
    Ok(())
}

/// The decoded, non-empty UTF-8 value of attribute `name`.
fn value_text(value: &str, name: &str) -> Result<String, TokenUriError> {
    let v = String::from_utf8(decode(value, name)?)
        .map_err(|_| TokenUriError::BadEncoding(name.to_string()))?;
    if v.is_empty() {
        let name = match name {
            "token" => "token",
            "object" => "object",
            "type" => "type",
            "module-path" => "module-path",
            "pin-source" => "pin-source",
            _ => "(an attribute)",
        };
        return Err(TokenUriError::Empty(name));
    }
    Ok(v)
}

/// RFC 3986 percent-decoding of attribute `name`'s value.
fn decode(value: &str, name: &str) -> Result<Vec<u8>, TokenUriError> {
    let bad = || TokenUriError::BadEncoding(name.to_string());
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn parses_the_attributes_a_node_needs() {
        let k = TokenKey::parse(&format!(
            "pkcs11:token=my%20token;object=comity-identity;id=%01%02;type=private?{MODULE}&pin-source=file:/etc/comity/pin"
        ))
        .unwrap();
        assert_eq!(k.token, "my token");
        assert_eq!(k.object, "comity-identity");
        assert_eq!(k.id, Some(vec![1, 2]));
        assert_eq!(k.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(k.pin_file, Some(PathBuf::from("/etc/comity/pin")));
        let no_pin = TokenKey::parse(&format!("pkcs11:token=t;object=o?{MODULE}")).unwrap();
        assert_eq!(no_pin.pin_file, None);
    }

    #[test]
    fn refuses_a_pin_in_the_uri_and_what_it_does_not_know() {
        let e = |s: &str| TokenKey::parse(s).unwrap_err();
        assert_eq!(
            e(&format!("pkcs11:token=t;object=o?{MODULE}&pin-value=1234")),
            TokenUriError::PinInUri
        );
        assert_eq!(
            e(&format!("pkcs11:token=t;object=o;pin-value=1234?{MODULE}")),
            TokenUriError::PinInUri
        );
        assert_eq!(
            e("pkcs11:token=t;object=o"),
            TokenUriError::Missing("module-path")
        );
        assert_eq!(
            e(&format!("pkcs11:object=o?{MODULE}")),
            TokenUriError::Missing("token")
        );
        assert_eq!(
            e(&format!("pkcs11:token=t;token=u;object=o?{MODULE}")),
            TokenUriError::Duplicate("token".into())
        );
        assert_eq!(
            e(&format!("pkcs11:token=t;object=o;slot-id=1?{MODULE}")),
            TokenUriError::Unknown("slot-id".into())
        );
        assert_eq!(
            e(&format!("pkcs11:token=t;object=o;type=public?{MODULE}")),
            TokenUriError::BadType("public".into())
        );
        assert_eq!(
            e("pkcs11:token=t;object=o?module-path=libsofthsm2.so"),
            TokenUriError::RelativeModule("libsofthsm2.so".into())
        );
        assert_eq!(
            e(&format!("pkcs11:token=t;object=o?{MODULE}&pin-source=|cat")),
            TokenUriError::BadPinSource("|cat".into())
        );
        assert_eq!(
            e(&format!("pkcs11:token=%zz;object=o?{MODULE}")),
            TokenUriError::BadEncoding("token".into())
        );
        // A malformed PIN is refused as a PIN, and never echoed.
        let pin = e(&format!("pkcs11:token=t;object=o;pin-value=12%4?{MODULE}"));
        assert_eq!(pin, TokenUriError::PinInUri);
        assert!(!pin.to_string().contains("12"), "{pin}");
        let pin = e(&format!("pkcs11:token=t;object=o?{MODULE}&pin-value=12%4"));
        assert_eq!(pin, TokenUriError::PinInUri);
        assert_eq!(
            e(&format!("pkcs11:token=;object=o?{MODULE}")),
            TokenUriError::Empty("token")
        );
        assert_eq!(
            e(&format!("pkcs11:token=t;object?{MODULE}")),
            TokenUriError::Empty("object")
        );
        assert_eq!(
            e(&format!(
                "pkcs11:token=t;object=o?{MODULE}&pin-source=file://host/p"
            )),
            TokenUriError::BadPinSource("file://host/p".into())
        );
        assert_eq!(
            TokenKey::parse(&format!(
                "pkcs11:token=t;object=o?{MODULE}&pin-source=file:///etc/p"
            ))
            .unwrap()
            .pin_file,
            Some(PathBuf::from("/etc/p"))
        );
        assert_eq!(
            e(&format!(
                "pkcs11:token=t;object=o;type=private;type=private?{MODULE}"
            )),
            TokenUriError::Duplicate("type".into())
        );
        assert_eq!(e("/etc/comity/node.key"), TokenUriError::NotPkcs11);
    }
}
