//! The token's user PIN: from a private file or the environment, never the
//! configuration.

use comity_config::{read_private_file, PrivateFileError, TokenKey, PIN_ENV};
use zeroize::Zeroizing;

/// A PIN file is a line; anything larger is not one.
const MAX_PIN_FILE_BYTES: u64 = 1024;

/// Why the PIN could not be had. Never contains the PIN.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("no PIN: the URI names no pin-source file and {PIN_ENV} is not set")]
    Missing,
    #[error("the PIN file: {0}")]
    File(#[from] PrivateFileError),
    #[error("the PIN is empty or not UTF-8")]
    Empty,
}

/// The PIN for `key`: the first line of its `pin-source` file, or
/// `COMITY_PKCS11_PIN`.
pub(crate) fn read(key: &TokenKey) -> Result<Zeroizing<String>, PinError> {
    let pin = match &key.pin_file {
        Some(path) => {
            let bytes = read_private_file(path, MAX_PIN_FILE_BYTES)?;
            Zeroizing::new(
                std::str::from_utf8(&bytes)
                    .map_err(|_| PinError::Empty)?
                    .to_string(),
            )
        }
        None => Zeroizing::new(std::env::var(PIN_ENV).map_err(|_| PinError::Missing)?),
    };
    let line = Zeroizing::new(pin.lines().next().unwrap_or("").trim_end().to_string());
    if line.is_empty() {
        return Err(PinError::Empty);
    }
    Ok(line)
}
