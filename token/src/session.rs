//! One logged-in session with the token, and the key found on it.

use comity_config::TokenKey;
use comity_protocol::NodeId;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::{pin, KeyFacts, TokenError};

/// DER of the curve name "edwards25519" (PrintableString), RFC 8410's
/// CKA_EC_PARAMS for Ed25519 in PKCS#11 3.0.
const EDWARDS25519_PARAMS: [u8; 14] = [
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];

pub(crate) struct Connection {
    session: Session,
    private: ObjectHandle,
    node: NodeId,
}

/// One loaded and initialised module per path for the whole process: the
/// module's state (its login, its threads) is per process, so loading it
/// again per session would only unload it under the other sessions' feet.
fn module(path: &std::path::Path) -> Result<Pkcs11, TokenError> {
    static MODULES: std::sync::Mutex<Vec<(std::path::PathBuf, Pkcs11)>> =
        std::sync::Mutex::new(Vec::new());
    let mut modules = MODULES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, m)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|source| TokenError::Module {
        module: path.display().to_string(),
        source,
    })?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(step("initialize the module")(e)),
    }
    modules.push((path.to_path_buf(), m.clone()));
    Ok(m)
}

fn step(step: &'static str) -> impl FnOnce(CkError) -> TokenError {
    move |source| TokenError::Pkcs11 { step, source }
}

/// Tokens (module and label) whose user PIN was refused by `C_Login` in
/// this process: never tried again by it, whichever signer asks.
static PIN_REFUSED: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
    std::sync::Mutex::new(Vec::new());

pub(crate) fn refused_before(key: &TokenKey) -> bool {
    PIN_REFUSED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|(m, t)| *m == key.module && *t == key.token)
}

/// The token, found and willing to take a login: not locked, not on its
/// last try, and its PIN not refused before by this process.
fn ready_for_login(key: &TokenKey) -> Result<(Pkcs11, Slot), TokenError> {
    if refused_before(key) {
        return Err(TokenError::PinRefused(
            "the token refused the user PIN earlier in this process: correct it and start the node again",
        ));
    }
    let module = module(&key.module)?;
    let slot = find_slot(&module, &key.token)?;
    let info = module
        .get_token_info(slot)
        .map_err(step("read the token's information"))?;
    if info.user_pin_locked() {
        return Err(TokenError::PinLocked(
            "the token says the user PIN is locked: its security officer must unlock it",
        ));
    }
    if info.user_pin_final_try() {
        return Err(TokenError::PinLocked(
            "the token says one wrong PIN more locks it: check the PIN by hand (e.g. pkcs11-tool --login --test) before starting the node",
        ));
    }
    Ok((module, slot))
}

pub(crate) fn check_without_login(key: &TokenKey) -> Result<(), TokenError> {
    ready_for_login(key)?;
    pin::read(key)?;
    Ok(())
}

/// Whether `e` means the session is gone (reopen it), rather than a
/// refusal of one operation.
pub(crate) fn lost(e: &TokenError) -> bool {
    matches!(
        e,
        TokenError::Pkcs11 {
            source: CkError::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::TokenNotPresent
                    | RvError::TokenNotRecognized
                    | RvError::CryptokiNotInitialized
                    | RvError::GeneralError,
                _,
            ),
            ..
        }
    )
}

/// Logs in at most once per try: a token counts wrong PINs and locks the
/// PIN after a few (then only its security officer can unlock it), so the
/// node never tries when the token says the next try is the last, and a
/// PIN `C_Login` refused is never tried again by this process
/// ([`TokenError::PinRefused`]).
fn login(key: &TokenKey, rw: bool) -> Result<Session, TokenError> {
    let (module, slot) = ready_for_login(key)?;
    let pin = pin::read(key)?;
    let session = if rw {
        module.open_rw_session(slot)
    } else {
        module.open_ro_session(slot)
    }
    .map_err(step("open a session"))?;
    let auth = AuthPin::new(pin.as_str().into());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CkError::Pkcs11(
            RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLocked
            | RvError::PinExpired
            | RvError::PinLenRange,
            _,
        )) => {
            PIN_REFUSED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key.module.clone(), key.token.clone()));
            return Err(TokenError::PinRefused(
                "the token refused the user PIN: correct the PIN file (or COMITY_PKCS11_PIN) and start the node again",
            ));
        }
        Err(e) => return Err(step("log in with the user PIN")(e)),
    }
    Ok(session)
}

fn find_slot(module: &Pkcs11, label: &str) -> Result<Slot, TokenError> {
    for slot in module
        .get_slots_with_token()
        .map_err(step("list the slots"))?
    {
        let info = module
            .get_token_info(slot)
            .map_err(step("read a token's information"))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(TokenError::NoToken(label.to_string()))
}

fn template(key: &TokenKey, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Label(key.object.as_bytes().to_vec()),
    ];
    if let Some(id) = &key.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

fn find_one(
    session: &Session,
    key: &TokenKey,
    class: ObjectClass,
    what: &'static str,
) -> Result<ObjectHandle, TokenError> {
    let found = session
        .find_objects(&template(key, class))
        .map_err(step("find the key"))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(TokenError::NoKey {
            token: key.token.clone(),
            object: key.object.clone(),
            id: key.id.clone(),
            what,
        }),
        many => Err(TokenError::Ambiguous {
            token: key.token.clone(),
            object: key.object.clone(),
            count: many.len(),
        }),
    }
}

/// The 32-byte key in a CKA_EC_POINT: DER OCTET STRING `04 20 ‖ key`
/// (PKCS#11 3.0), or the bare key (some modules).
fn ed25519_point(bytes: &[u8]) -> Option<[u8; 32]> {
    match bytes {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        _ => bytes.try_into().ok(),
    }
}

fn public_key(session: &Session, key: &TokenKey) -> Result<NodeId, TokenError> {
    let public = find_one(session, key, ObjectClass::PUBLIC_KEY, "public key")?;
    let bad = || TokenError::BadPublicKey {
        object: key.object.clone(),
    };
    let attributes = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(step("read the public key"))?;
    let point = attributes
        .iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => ed25519_point(p),
            _ => None,
        })
        .ok_or_else(bad)?;
    let node = NodeId(point);
    node.verifying_key().map_err(|_| bad())?;
    Ok(node)
}

impl Connection {
    pub(crate) fn open(key: &TokenKey) -> Result<Connection, TokenError> {
        let session = login(key, false)?;
        let private = find_one(&session, key, ObjectClass::PRIVATE_KEY, "private key")?;
        let node = public_key(&session, key)?;
        Ok(Connection {
            session,
            private,
            node,
        })
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.node
    }

    pub(crate) fn sign(&self, mechanism: &Mechanism, input: &[u8]) -> Result<Vec<u8>, TokenError> {
        self.session
            .sign(mechanism, self.private, input)
            .map_err(step("sign"))
    }

    pub(crate) fn facts(&self) -> Result<KeyFacts, TokenError> {
        let attributes = self
            .session
            .get_attributes(
                self.private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Local,
                ],
            )
            .map_err(step("read the key's attributes"))?;
        // An attribute the token does not report counts against the key.
        let mut f = KeyFacts {
            sensitive: false,
            extractable: true,
            never_extractable: false,
            always_sensitive: false,
            local: false,
        };
        for a in attributes {
            match a {
                Attribute::Sensitive(v) => f.sensitive = v,
                Attribute::Extractable(v) => f.extractable = v,
                Attribute::NeverExtractable(v) => f.never_extractable = v,
                Attribute::AlwaysSensitive(v) => f.always_sensitive = v,
                Attribute::Local(v) => f.local = v,
                _ => {}
            }
        }
        Ok(f)
    }
}

pub(crate) fn generate(key: &TokenKey) -> Result<NodeId, TokenError> {
    let session = login(key, true)?;
    let existing = session
        .find_objects(&[Attribute::Label(key.object.as_bytes().to_vec())])
        .map_err(step("look for an existing key"))?;
    if !existing.is_empty() {
        return Err(TokenError::Exists {
            token: key.token.clone(),
            object: key.object.clone(),
        });
    }
    let label = Attribute::Label(key.object.as_bytes().to_vec());
    let id = Attribute::Id(
        key.id
            .clone()
            .unwrap_or_else(|| key.object.as_bytes().to_vec()),
    );
    let public = [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::EcParams(EDWARDS25519_PARAMS.to_vec()),
        label.clone(),
        id.clone(),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sign(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        label,
        id,
    ];
    session
        .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
        .map_err(step("generate an Ed25519 key pair"))?;
    public_key(&session, key)
}

pub(crate) fn relabel(key: &TokenKey, object: &str) -> Result<(), TokenError> {
    let session = login(key, true)?;
    // The same key but for its label (only the label and id are looked at).
    let mut to = key.clone();
    to.object = object.to_string();
    // Each half moves once: a relabel cut short (one half moved) is
    // finished by the next call.
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let find = |k: &TokenKey| {
            session
                .find_objects(&template(k, class))
                .map_err(step("find the key"))
        };
        match (find(key)?.as_slice(), find(&to)?.len()) {
            ([one], 0) => session
                .update_attributes(*one, &[Attribute::Label(object.as_bytes().to_vec())])
                .map_err(step("relabel the key"))?,
            ([], 1) => {}
            ([], 0) => {
                return Err(TokenError::NoKey {
                    token: key.token.clone(),
                    object: key.object.clone(),
                    id: key.id.clone(),
                    what: "key pair",
                })
            }
            _ => {
                return Err(TokenError::Exists {
                    token: key.token.clone(),
                    object: object.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Destroys the key pair `key` names (both objects of its label and id):
/// only for a key this process just made and could not put to use.
pub(crate) fn destroy(key: &TokenKey) -> Result<(), TokenError> {
    let session = login(key, true)?;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        for object in session
            .find_objects(&template(key, class))
            .map_err(step("find the key"))?
        {
            session
                .destroy_object(object)
                .map_err(step("destroy the key"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms_of_an_edwards_point() {
        let mut der = vec![0x04, 0x20];
        der.extend([7u8; 32]);
        assert_eq!(ed25519_point(&der), Some([7; 32]));
        assert_eq!(ed25519_point(&[9u8; 32]), Some([9; 32]));
        assert_eq!(ed25519_point(&der[..20]), None);
    }
}
