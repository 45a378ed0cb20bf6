//! Mutual TLS 1.3 between pinned peers.
//!
//! Each node presents a self-signed certificate whose key *is* its Ed25519
//! identity key. Names, issuers and dates in certificates mean nothing
//! here: trust is the pin. Both sides check the other's key against the
//! node ids they pinned — the server refuses unpinned clients during the
//! handshake, the client refuses a server whose key is not the one it
//! dialled — and rustls checks that the peer holds the private key
//! (the TLS 1.3 CertificateVerify signature).
//!
//! A node that announced an identity transition carries the statement in
//! its certificate (extension [`TRANSITION_OID`]): certificates are the one
//! thing a peer reads before it decides whether to talk at all, so a peer
//! whose pin no longer matches still receives it. The verifiers hand every
//! statement they find to [`OnStatement`]; what it is worth is decided
//! there (a statement is self-authenticating, and at this point the
//! presenter has not yet proved it holds the certificate's key).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use comity_protocol::identity::IdentitySigner;
use comity_protocol::transition::TransitionStatement;
use comity_protocol::{Identity, NodeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// ALPNs of Comity's session protocol over QUIC, most preferred first:
/// version 5 (messages with attachments, and attachment streams), version 4
/// (a dialler may send `Restoration`), version 3 (it may send
/// `ResentEnvelope`) and version 2 (`Rejected` names an optional id). Both
/// sides offer all and the acceptor takes the first of its list that the
/// dialler offers, so two nodes of this version speak 5, and either speaks
/// the older one with a node that offers only that.
pub const ALPNS: [&[u8]; 4] = [b"comity/5", b"comity/4", b"comity/3", b"comity/2"];
/// The name the client asks for; certificates carry it, nobody checks it.
pub const SERVER_NAME: &str = "comity";

/// The certificate extension that carries a node's identity transition
/// statement (its framed bytes, frame type 7), not critical. The arc is
/// IANA's enterprise number for documentation (RFC 5612), a placeholder
/// until Comity has its own.
pub const TRANSITION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 32473, 7];

/// SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix and the key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot make the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC crypto configuration: {0}")]
    Quic(String),
}

/// The set of pinned node ids, shared with the server verifier so that
/// `peer add` takes effect without a restart.
#[derive(Clone, Debug, Default)]
pub struct Pins(Arc<RwLock<HashSet<NodeId>>>);

impl Pins {
    pub fn new(ids: impl IntoIterator<Item = NodeId>) -> Self {
        Pins(Arc::new(RwLock::new(ids.into_iter().collect())))
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    pub fn insert(&self, id: NodeId) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(id);
    }

    pub fn remove(&self, id: &NodeId) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Called with the key of every client refused at the handshake (for the
/// log and the audit trail).
pub type OnRefused = Arc<dyn Fn(NodeId) + Send + Sync>;

/// Called with every identity transition statement a peer's certificate
/// carries, and the key that certificate presents (not yet proven held).
pub type OnStatement = Arc<dyn Fn(NodeId, TransitionStatement) + Send + Sync>;

/// The statement a certificate carries, if it carries one that decodes
/// (a malformed one is as good as none: it could not be applied).
pub fn statement_of(cert: &CertificateDer<'_>) -> Option<TransitionStatement> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let ext = parsed.iter_extensions().find(|e| {
        e.oid
            .iter()
            .is_some_and(|arcs| arcs.eq(TRANSITION_OID.iter().copied()))
    })?;
    TransitionStatement::from_bytes(ext.value).ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's certificate and the key that signs its handshakes: the
/// identity key wherever it is (in memory, or on a token, where the
/// CertificateVerify signature of every handshake is made). Replaced whole
/// by [`TlsIdentity::present`]; handshakes under way keep the one they took.
pub struct TlsIdentity {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
    signatures: Arc<AtomicU64>,
    /// Where both verifiers send the statements peers present.
    peer_statements: OnStatement,
}

impl TlsIdentity {
    /// `identity`'s key, no statement; peers' statements are ignored until
    /// [`TlsIdentity::with_peer_statements`].
    pub fn new(identity: &Identity) -> Result<TlsIdentity, TlsSetupError> {
        let signatures = Arc::new(AtomicU64::new(0));
        let certified = certify(identity, None, &signatures)?;
        Ok(TlsIdentity {
            current: Arc::new(RwLock::new(Arc::new(certified))),
            signatures,
            peer_statements: Arc::new(|_, _| {}),
        })
    }

    /// Peers' statements go to `on_statement` (configurations made after).
    pub fn with_peer_statements(mut self, on_statement: OnStatement) -> Self {
        self.peer_statements = on_statement;
        self
    }

    /// From the next handshake on, present `identity`'s key with
    /// `statement` in the certificate (or none).
    pub fn present(
        &self,
        identity: &Identity,
        statement: Option<&TransitionStatement>,
    ) -> Result<(), TlsSetupError> {
        let certified = Arc::new(certify(identity, statement, &self.signatures)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = certified;
        Ok(())
    }

    /// Whether the certificate presented now carries a transition
    /// statement.
    pub fn presents_statement(&self) -> bool {
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        current.cert.first().and_then(statement_of).is_some()
    }

    /// Handshake signatures made with this identity so far (metrics, and
    /// the token test's proof that handshakes are signed by the token).
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    fn resolver(&self) -> Arc<Presented> {
        Arc::new(Presented(self.current.clone()))
    }

    #[cfg(test)]
    fn certificate(&self) -> CertificateDer<'static> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).cert[0].clone()
    }
}

fn certify(
    identity: &Identity,
    statement: Option<&TransitionStatement>,
    signatures: &Arc<AtomicU64>,
) -> Result<CertifiedKey, TlsSetupError> {
    let key = HandshakeKey {
        signer: identity.signer(),
        public: identity.id().as_bytes().to_vec(),
        signatures: signatures.clone(),
    };
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, identity.id().to_string());
    if let Some(s) = statement {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                TRANSITION_OID,
                s.to_bytes(),
            ));
    }
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], Arc::new(key)))
}

/// The certificate presented now, to servers and clients alike.
#[derive(Debug)]
struct Presented(Arc<RwLock<Arc<CertifiedKey>>>);

impl Presented {
    fn now(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for Presented {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.now())
    }
}

impl ResolvesClientCert for Presented {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.now())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The identity key as rustls and rcgen see it: Ed25519 only.
#[derive(Clone)]
struct HandshakeKey {
    signer: IdentitySigner,
    public: Vec<u8>,
    signatures: Arc<AtomicU64>,
}

impl std::fmt::Debug for HandshakeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HandshakeKey").field(&self.signer).finish()
    }
}

impl rcgen::PublicKeyData for HandshakeKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for HandshakeKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // The certificate is signed at start and whenever what it carries
        // changes; its signature carries no trust (the pin does), but a
        // token that cannot sign is an error.
        self.signer
            .sign(msg)
            .map(|s| s.to_vec())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

impl rustls::sign::SigningKey for HandshakeKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<rustls_pki_types::SubjectPublicKeyInfoDer<'_>> {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&self.public);
        Some(spki.into())
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ED25519
    }
}

impl rustls::sign::Signer for HandshakeKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let signature = self.signer.sign(message).map_err(|e| {
            tracing::error!(error = %e, "the identity key did not sign a TLS handshake");
            rustls::Error::General(e.to_string())
        })?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(signature.to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// The node id whose Ed25519 key a certificate carries.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| bad())?;
    let spki = ee.subject_public_key_info();
    let key = spki
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(bad)?;
    Ok(NodeId(key))
}

/// The pinned node id of the peer on an established QUIC connection.
/// The ALPN the handshake of `conn` settled on.
pub fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

pub fn peer_of(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    node_id_of(certs.first()?).ok()
}

/// TLS 1.2 is never negotiated (both sides offer only 1.3).
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// The CertificateVerify check: the peer holds the key it presented.
fn verify_tls13(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn not_pinned() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

#[derive(Debug)]
struct PinnedClients {
    pins: Pins,
    provider: Arc<CryptoProvider>,
    on_refused: Callback<OnRefused>,
    on_statement: Callback<OnStatement>,
}

struct Callback<F>(F);

impl<F> std::fmt::Debug for Callback<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Callback")
    }
}

/// The certificate's key, after its statement (if any) went to `on_statement`.
fn presented(
    cert: &CertificateDer<'_>,
    on_statement: &OnStatement,
) -> Result<NodeId, rustls::Error> {
    let id = node_id_of(cert)?;
    if let Some(statement) = statement_of(cert) {
        on_statement(id, statement);
    }
    Ok(id)
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = presented(end_entity, &self.on_statement.0)?;
        if self.pins.contains(&id) {
            Ok(ClientCertVerified::assertion())
        } else {
            (self.on_refused.0)(id);
            Err(not_pinned())
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[derive(Debug)]
struct PinnedServer {
    expected: NodeId,
    provider: Arc<CryptoProvider>,
    on_statement: Callback<OnStatement>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if presented(end_entity, &self.on_statement.0)? == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(not_pinned())
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Server side: TLS 1.3 only, client certificates mandatory and pinned,
/// and no session resumption: a resumed handshake never runs the client
/// verifier, so a peer unpinned after it got a ticket could come back. With
/// no tickets and no session cache every connection is a full handshake
/// checked against the pins of that moment.
pub fn server_crypto(
    me: &TlsIdentity,
    pins: Pins,
    on_refused: OnRefused,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsSetupError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClients {
        pins,
        provider: provider.clone(),
        on_refused: Callback(on_refused),
        on_statement: Callback(me.peer_statements.clone()),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(me.resolver());
    config.alpn_protocols = ALPNS.iter().map(|a| a.to_vec()).collect();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| TlsSetupError::Quic(e.to_string()))
}

/// Client side, for dialling the peer `expected` and nobody else.
pub fn client_crypto(
    me: &TlsIdentity,
    expected: NodeId,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsSetupError> {
    quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(me, expected)?)
        .map_err(|e| TlsSetupError::Quic(e.to_string()))
}

/// The TLS part of [`client_crypto`]: it never resumes a session either
/// (every dial checks the server against the pin).
pub fn client_tls(
    me: &TlsIdentity,
    expected: NodeId,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        expected,
        provider: provider.clone(),
        on_statement: Callback(me.peer_statements.clone()),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(me.resolver());
    config.alpn_protocols = ALPNS.iter().map(|a| a.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use comity_protocol::Timestamp;

    fn id(seed: u8) -> Identity {
        Identity::from_seeds(&[seed; 32], &[seed ^ 0xff; 32], Timestamp(0))
    }

    #[test]
    fn certificate_carries_the_identity_key() {
        let id = id(1);
        let tls = TlsIdentity::new(&id).unwrap();
        assert_eq!(node_id_of(&tls.certificate()).unwrap(), id.id());
        assert_eq!(statement_of(&tls.certificate()), None);
    }

    #[test]
    fn a_presented_statement_rides_in_the_certificate_until_replaced() {
        use comity_protocol::transition::IdentityTransition;
        let (old, new) = (id(1), id(2));
        let statement = IdentityTransition {
            old: old.id(),
            new: new.id(),
            created_at: Timestamp(1_000),
            effective_after: Timestamp(2_000),
            reason: "routine".into(),
        }
        .sign(&old, &new)
        .unwrap();
        let tls = TlsIdentity::new(&old).unwrap();
        tls.present(&old, Some(&statement)).unwrap();
        let cert = tls.certificate();
        assert_eq!(node_id_of(&cert).unwrap(), old.id());
        assert_eq!(statement_of(&cert), Some(statement.clone()));
        // After the switch: the new key, still with the statement.
        tls.present(&new, Some(&statement)).unwrap();
        assert_eq!(node_id_of(&tls.certificate()).unwrap(), new.id());
        assert_eq!(statement_of(&tls.certificate()), Some(statement));
        tls.present(&new, None).unwrap();
        assert_eq!(statement_of(&tls.certificate()), None);
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        assert!(node_id_of(&junk).is_err());
        assert_eq!(statement_of(&junk), None);
    }
}
