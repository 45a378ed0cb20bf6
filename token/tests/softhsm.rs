//! The identity key on a real PKCS#11 module (SoftHSM2): made on the token
//! as a key that cannot leave it, signing what verifies under the node id,
//! and refused when the token would let the key out.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use comity_config::TokenKey;
use comity_protocol::identity::ExternalSigner;
use comity_protocol::{Identity, Timestamp};
use comity_tests::softhsm::{SoftHsm, MODULE, PIN};
use comity_token::{generate, TokenError, TokenSigner};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn key(hsm: &SoftHsm, object: &str) -> TokenKey {
    TokenKey::parse(&hsm.uri(object)).unwrap()
}

// One test: SOFTHSM2_CONF is process-wide, and the module is loaded once.
#[test]
fn a_token_key_signs_never_leaves_and_is_refused_when_it_could() {
    let Some(hsm) = SoftHsm::new("comity-unit") else {
        return;
    };
    let k = key(&hsm, "identity");
    // A readable PIN file is refused.
    std::fs::set_permissions(hsm.pin_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose_pin = TokenSigner::open(&k).unwrap_err().to_string();
    assert!(loose_pin.contains("chmod 600"), "{loose_pin}");
    std::fs::set_permissions(hsm.pin_file(), std::fs::Permissions::from_mode(0o600)).unwrap();

    let id = generate(&k).unwrap();
    let signer = TokenSigner::open(&k).unwrap();
    assert_eq!(signer.node_id(), id);
    let facts = signer.facts().unwrap();
    assert!(facts.sensitive && !facts.extractable, "{facts:?}");
    assert!(
        facts.never_extractable && facts.always_sensitive && facts.local,
        "{facts:?}"
    );

    // What it signs verifies under the node id: the certificate of an
    // identity on it is checked against the id when it is made.
    let identity = Identity::with_external_key(signer.clone(), &[5; 32], Timestamp(1)).unwrap();
    assert_eq!(identity.id(), id);
    assert!(identity.encryption_cert().verify().is_ok());
    assert!(identity.ed25519_secret().is_none(), "no secret in memory");
    assert_eq!(signer.signatures(), 1);
    let again = identity.signer().sign(b"the same input").unwrap();
    assert_eq!(identity.signer().sign(b"the same input").unwrap(), again);

    assert!(matches!(generate(&k), Err(TokenError::Exists { .. })));

    // A key the token would let out is refused.
    make_extractable_key(&hsm, "loose");
    let refused = TokenSigner::open(&key(&hsm, "loose")).unwrap_err();
    assert!(
        matches!(refused, TokenError::Extractable { .. }),
        "{refused}"
    );

    // The open signer still signs: its session is its own.
    assert!(identity.signer().sign(b"after").is_ok());

    // A key made and not used (comity init could not write its files) is
    // destroyed, and its label is free again.
    comity_token::destroy_unused(&key(&hsm, "loose")).unwrap();
    assert!(matches!(
        TokenSigner::open(&key(&hsm, "loose")),
        Err(TokenError::NoKey { .. })
    ));
    assert!(generate(&key(&hsm, "loose")).is_ok());

    // Relabelling (an identity rotation on the token): the successor
    // made under a second label takes the first, the key it replaces
    // moves aside; both keep their ids and stay non-extractable.
    let next = key(&hsm, "identity.next");
    let next_id = generate(&next).unwrap();
    assert!(matches!(
        comity_token::relabel(&next, "identity"),
        Err(TokenError::Exists { .. })
    ));
    comity_token::relabel(&k, "identity.left").unwrap();
    comity_token::relabel(&next, "identity").unwrap();
    let moved = TokenSigner::open(&k).unwrap();
    assert_eq!(moved.node_id(), next_id);
    let facts = moved.facts().unwrap();
    assert!(facts.sensitive && !facts.extractable, "{facts:?}");
    assert_eq!(
        TokenSigner::open(&key(&hsm, "identity.left"))
            .unwrap()
            .node_id(),
        id
    );
    // Again (a switch retried after a crash): nothing changes.
    comity_token::relabel(&next, "identity").unwrap();
    assert_eq!(TokenSigner::open(&k).unwrap().node_id(), next_id);
    assert!(matches!(
        comity_token::relabel(&key(&hsm, "absent"), "elsewhere"),
        Err(TokenError::NoKey { .. })
    ));
    drop(moved);

    // A rotation's successor: made under the pending label (a leftover
    // there is destroyed first), then labelled by its id.
    generate(&comity_token::pending_key(&k)).unwrap();
    let (successor, successor_id) = comity_token::generate_successor(&k).unwrap();
    assert_eq!(successor.object, format!("identity-{successor_id}"));
    let opened = TokenSigner::open(&successor).unwrap();
    assert_eq!(opened.node_id(), successor_id);
    assert!(!opened.facts().unwrap().extractable);
    assert!(matches!(
        TokenSigner::open(&comity_token::pending_key(&k)),
        Err(TokenError::NoKey { .. })
    ));
    drop(opened);

    // Last, with every session closed (a login lasts while the process
    // has one): a wrong PIN is refused once, without echoing it, and this
    // process never tries that token's PIN again, not even the right one
    // (each try counts towards locking the token).
    drop(identity);
    drop(signer);
    std::fs::write(hsm.pin_file(), "999999\n").unwrap();
    comity_token::check_without_login(&k).unwrap();
    let wrong = TokenSigner::open(&key(&hsm, "fresh")).unwrap_err();
    assert!(matches!(wrong, TokenError::PinRefused(_)), "{wrong}");
    assert!(!wrong.to_string().contains("999999"), "{wrong}");
    std::fs::write(hsm.pin_file(), format!("{PIN}\n")).unwrap();
    assert!(matches!(
        TokenSigner::open(&k),
        Err(TokenError::PinRefused(_))
    ));
}

/// An Ed25519 key made with CKA_EXTRACTABLE true, as a careless recipe
/// would make it.
fn make_extractable_key(hsm: &SoftHsm, label: &str) {
    let module = Pkcs11::new(MODULE).unwrap();
    let _ = module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| module.get_token_info(*s).unwrap().label().trim_end() == hsm.label)
        .unwrap();
    let session = module.open_rw_session(slot).unwrap();
    // Login is per process and token: the signer above logged in already.
    match session.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    let params = [0x06, 0x03, 0x2b, 0x65, 0x70].to_vec();
    let label = Attribute::Label(label.as_bytes().to_vec());
    session
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(params),
                label.clone(),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sign(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                label,
            ],
        )
        .unwrap();
}
