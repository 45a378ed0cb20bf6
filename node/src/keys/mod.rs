//! The node's own keys over time: encryption-key rotation (now, or on a
//! schedule), the superseded keys kept through their grace period, and
//! their destruction after it; and announcing a new identity key.

pub mod identity;
pub mod previous;
mod rotation;

pub use identity::{IdentityRotationError, OwnTransition};
pub use previous::PreviousKeyError;
pub(crate) use rotation::{rotate_encryption, schedule};
pub use rotation::{KeyStatus, PreviousStatus, RotationError};
