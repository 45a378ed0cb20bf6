//! A node's identity key on a PKCS#11 token (an HSM, a smart card,
//! SoftHSM2 in tests).
//!
//! The key is made on the token ([`generate`]) as a sensitive,
//! non-extractable Ed25519 key (CKK_EC_EDWARDS) and never leaves it: every
//! signature the node makes with its identity — envelopes, receipts,
//! checkpoints, cosignatures, TLS handshakes — is a CKM_EDDSA operation on
//! the token ([`TokenSigner`]). A key that the token would let out
//! (CKA_EXTRACTABLE true, or not CKA_SENSITIVE) is refused.
//!
//! The user PIN comes from the file the URI names (`pin-source`, which must
//! be mode 0600 or stricter) or from the environment variable
//! [`comity_config::PIN_ENV`]; it is kept in a zeroized buffer to log in
//! again if the token drops the session, and is never logged.

mod load;
mod pin;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use comity_config::TokenKey;
use comity_protocol::identity::{ExternalSigner, SignError};
use comity_protocol::NodeId;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;

pub use load::{load, LoadError, LoadedKeys};
pub use pin::PinError;
use session::Connection;

/// Why the token could not be used. Never contains the PIN.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot load the PKCS#11 module {module}: {source}")]
    Module {
        module: String,
        source: cryptoki::error::Error,
    },
    #[error("PIN: {0}")]
    Pin(#[from] PinError),
    /// Never retried by this process: a token locks its PIN after a few
    /// wrong ones.
    #[error("PIN: {0}")]
    PinRefused(&'static str),
    /// The token's flags say the PIN is locked or on its last try: no
    /// login is attempted (nothing was counted against it).
    #[error("PIN: {0}")]
    PinLocked(&'static str),
    #[error("the token was reopened {0:?} ago; not again so soon")]
    Backoff(std::time::Duration),
    #[error("no token labelled {0:?} is present in the module's slots")]
    NoToken(String),
    #[error("the token {token:?} has no Ed25519 {what} labelled {object:?}{}", id_note(.id))]
    NoKey {
        token: String,
        object: String,
        id: Option<Vec<u8>>,
        what: &'static str,
    },
    #[error("the token {token:?} has {count} Ed25519 private keys labelled {object:?}: give id= in the URI")]
    Ambiguous {
        token: String,
        object: String,
        count: usize,
    },
    #[error(
        "the token {token:?} already holds a key labelled {object:?}; refusing to make a second"
    )]
    Exists { token: String, object: String },
    #[error("the key {object:?} on token {token:?} can leave the token ({why}); Comity uses only keys that are sensitive and non-extractable")]
    Extractable {
        token: String,
        object: String,
        why: &'static str,
    },
    #[error("the public key of {object:?} is not an Ed25519 point (CKA_EC_POINT)")]
    BadPublicKey { object: String },
    #[error("the token's signature: {0}")]
    Signature(#[from] comity_protocol::identity::SignError),
    #[error("the token refused the operation ({step}): {source}")]
    Pkcs11 {
        step: &'static str,
        source: cryptoki::error::Error,
    },
}

fn id_note(id: &Option<Vec<u8>>) -> String {
    match id {
        Some(id) => format!(
            " with id {}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        None => String::new(),
    }
}

/// What the token says about the private key (shown by `comity keys`,
/// checked by the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyFacts {
    /// CKA_SENSITIVE: the value cannot be read in the clear.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE: the key can be exported (wrapped) at all.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE: it never could.
    pub never_extractable: bool,
    /// CKA_ALWAYS_SENSITIVE: it always was sensitive.
    pub always_sensitive: bool,
    /// CKA_LOCAL: it was generated on the token.
    pub local: bool,
}

/// The identity key on the token: signs with CKM_EDDSA (pure Ed25519).
pub struct TokenSigner {
    key: TokenKey,
    node: NodeId,
    connection: Mutex<Option<Connection>>,
    signatures: AtomicU64,
    facts: KeyFacts,
    /// When the session was last opened again, to space reopenings out.
    reopened: Mutex<Option<std::time::Instant>>,
}

/// At most one reopening of the session in this long.
const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("uri", &self.key)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Loads the module, logs in and finds the key; refuses a key that can
    /// leave the token.
    pub fn open(key: &TokenKey) -> Result<Arc<TokenSigner>, TokenError> {
        let (connection, facts) = open_kept_key(key)?;
        let node = connection.node_id();
        Ok(Arc::new(TokenSigner {
            key: key.clone(),
            node,
            connection: Mutex::new(Some(connection)),
            signatures: AtomicU64::new(0),
            facts,
            reopened: Mutex::new(None),
        }))
    }

    /// The private key's attributes, read from the token now.
    pub fn facts(&self) -> Result<KeyFacts, TokenError> {
        self.with_connection("read the key's attributes", |c| c.facts())
    }

    /// The key's attributes as read when it was opened.
    pub fn facts_at_open(&self) -> KeyFacts {
        self.facts
    }

    /// Whether the token refused this node's PIN in this process: then
    /// nothing more is signed until the node restarts with the right one.
    pub fn pin_refused(&self) -> bool {
        session::refused_before(&self.key)
    }

    /// Signatures the token made for this process.
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    /// Runs `op` on the open session; if the session is gone (the token was
    /// reset or removed), opens it again, at most every [`REOPEN_EVERY`],
    /// and retries once.
    fn with_connection<T>(
        &self,
        step: &'static str,
        op: impl Fn(&Connection) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            match op(c) {
                Ok(v) => return Ok(v),
                // A refusal of this input (a length, a mechanism) leaves the
                // session as good as it was.
                Err(e) if !session::lost(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "the token's session is gone; opening it again")
                }
            }
        }
        *slot = None;
        {
            let mut last = self.reopened.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = *last {
                if at.elapsed() < REOPEN_EVERY {
                    return Err(TokenError::Backoff(at.elapsed()));
                }
            }
            *last = Some(std::time::Instant::now());
        }
        // Still a key that cannot leave the token, and the same one.
        let (fresh, _) = open_kept_key(&self.key)?;
        if fresh.node_id() != self.node {
            return Err(TokenError::NoKey {
                token: self.key.token.clone(),
                object: self.key.object.clone(),
                id: self.key.id.clone(),
                what: "key with this node's id",
            });
        }
        let v = op(&fresh)
            .inspect_err(|e| tracing::error!(error = %e, step, "the token failed again"))?;
        *slot = Some(fresh);
        Ok(v)
    }
}

/// A session with `key`'s token and its attributes, refused when the key
/// could leave the token (CKA_EXTRACTABLE, or not CKA_SENSITIVE).
fn open_kept_key(key: &TokenKey) -> Result<(Connection, KeyFacts), TokenError> {
    let connection = Connection::open(key)?;
    let facts = connection.facts()?;
    let why = if facts.extractable {
        "CKA_EXTRACTABLE is true"
    } else if !facts.sensitive {
        "CKA_SENSITIVE is false"
    } else {
        return Ok((connection, facts));
    };
    Err(TokenError::Extractable {
        token: key.token.clone(),
        object: key.object.clone(),
        why,
    })
}

impl ExternalSigner for TokenSigner {
    fn node_id(&self) -> NodeId {
        self.node
    }

    fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignError> {
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let signature = self
            .with_connection("sign", |c| c.sign(&mechanism, input))
            .map_err(|e| SignError::Token(e.to_string()))?;
        let signature: [u8; 64] = signature
            .as_slice()
            .try_into()
            .map_err(|_| SignError::BadSignature)?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(signature)
    }

    fn describe(&self) -> String {
        format!(
            "PKCS#11 token {:?}, key {:?}",
            self.key.token, self.key.object
        )
    }
}

/// What `comityd --check` can say without logging in (a login costs a try
/// of a wrong PIN): the module loads, the token is present, its PIN is not
/// locked or on its last try, and the PIN can be read.
pub fn check_without_login(key: &TokenKey) -> Result<(), TokenError> {
    session::check_without_login(key)
}

/// Makes the identity key on the token: Ed25519, sensitive, never
/// extractable, a token object. Refuses when a key of that label exists.
pub fn generate(key: &TokenKey) -> Result<NodeId, TokenError> {
    session::generate(key)
}

/// The label of the key made on the token for identity `id` by an
/// identity rotation (the key made at `comity init` keeps the label the
/// URI names): the encryption-key file names the identity in use, and its
/// key is found under this label when the URI's key is another.
pub fn successor_key(base: &TokenKey, id: &NodeId) -> TokenKey {
    let mut key = base.clone();
    key.object = format!("{}-{id}", base.object);
    key.id = None;
    key
}

/// Where a rotation makes its new key before its id (and so its label)
/// is known.
pub fn pending_key(base: &TokenKey) -> TokenKey {
    let mut key = base.clone();
    key.object = format!("{}.next", base.object);
    key.id = None;
    key
}

/// Makes the key for an identity rotation: generated under
/// [`pending_key`] (one left by an attempt that crashed is destroyed
/// first), then relabelled to its [`successor_key`]. Returns the new key.
pub fn generate_successor(base: &TokenKey) -> Result<(TokenKey, NodeId), TokenError> {
    let pending = pending_key(base);
    session::destroy(&pending)?;
    let id = session::generate(&pending)?;
    let key = successor_key(base, &id);
    session::relabel(&pending, &key.object)?;
    Ok((key, id))
}

/// Gives the key pair of `key` (both its objects) the label `object`, on
/// the token; refuses when another key has that label. A relabel cut
/// short is finished by calling again (a call after it was done changes
/// nothing: check the key's id under its new label). An identity
/// rotation makes its new key under [`pending_key`] and relabels it to
/// its [`successor_key`] once its id is known.
pub fn relabel(key: &TokenKey, object: &str) -> Result<(), TokenError> {
    session::relabel(key, object)
}

/// Destroys the key pair of `key` on the token. For `comity init` undoing
/// a key it made and could not use (its files could not be written): a
/// node's key in use is never destroyed by this.
pub fn destroy_unused(key: &TokenKey) -> Result<(), TokenError> {
    session::destroy(key)
}
