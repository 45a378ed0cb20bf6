//! The node's own keys over time: encryption-key rotation (now, or on a
//! schedule), the superseded keys kept through their grace period, and
//! their destruction after it.

pub mod previous;
mod rotation;

pub use previous::{PreviousKeyError, Superseded};
pub(crate) use rotation::{expire_previous, rotate_encryption, schedule};
pub use rotation::{KeyStatus, PreviousStatus, RotationError};
