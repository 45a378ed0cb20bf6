//! The entry with which a node's log records its switch to a new identity
//! key: from that entry on, its checkpoints are signed by the new key, and
//! the log stays the same log (same origin, named by its first key).
//!
//! The entry is `identity-transition`, actor `node`, and its detail is
//! [`SWITCH_PREFIX`] followed by the framed [`TransitionStatement`] in
//! standard base64 (with padding). A verifier that knows the log's first
//! key follows these entries to the key that signs each checkpoint; a
//! statement that does not verify against the key current at its entry
//! moves nothing (docs/audit.md §5.6, step 6a).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::entry::{Actor, AuditEntry, AuditKind};
use crate::transition::TransitionStatement;

/// How a switch entry's detail begins.
pub const SWITCH_PREFIX: &str = "switched to a new identity key by transition statement ";

/// The detail of the switch entry for `statement` (at most 739 bytes: a
/// framed statement is at most 512).
pub fn switch_detail(statement: &TransitionStatement) -> String {
    format!("{SWITCH_PREFIX}{}", BASE64.encode(statement.to_bytes()))
}

/// The statement of a switch entry: `None` if `entry` is not one; an error
/// (in words) if it says it is but its statement does not decode.
pub fn switch_of(entry: &AuditEntry) -> Option<Result<TransitionStatement, String>> {
    if entry.kind != AuditKind::IdentityTransition || entry.actor != Actor::Node {
        return None;
    }
    let b64 = entry.detail.strip_prefix(SWITCH_PREFIX)?;
    Some(
        BASE64
            .decode(b64)
            .map_err(|e| format!("the statement is not base64: {e}"))
            .and_then(|bytes| {
                TransitionStatement::from_bytes(&bytes)
                    .map_err(|e| format!("the statement does not decode: {e}"))
            }),
    )
}
