//! What operators see of the listing: a page of message summaries (see
//! [`crate::store::listing`]), each sent message with its last error.

use crate::context::Context;
use crate::outbox;
use crate::store::{ListQuery, Position, StoreError, Summary, Way};

/// Largest page asked for.
pub const MAX_PAGE: usize = 1000;
/// A page's size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// One message of a page.
#[derive(Clone, Debug)]
pub struct Listed {
    pub summary: Summary,
    /// Sent only: the message's own last error, or while it is pending,
    /// its peer's.
    pub last_error: Option<String>,
}

/// One page of `q`, and where the next one starts. Reads the page's
/// summaries (at most [`crate::store::listing::SCAN_BUDGET`]) and the
/// status of each message sent on it.
pub(crate) fn page(
    ctx: &Context,
    q: &ListQuery,
) -> Result<(Vec<Listed>, Option<Position>), StoreError> {
    let page = ctx.store.list(q)?;
    let mut out = Vec::with_capacity(page.summaries.len());
    for summary in page.summaries {
        let last_error = match summary.way {
            Way::Received => None,
            Way::Sent => match ctx.store.outbound_status(&summary.id)? {
                Some(s) => outbox::last_error_for(ctx, &summary.peer, &s),
                None => None,
            },
        };
        out.push(Listed {
            summary,
            last_error,
        });
    }
    Ok((out, page.next))
}
