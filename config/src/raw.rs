//! The file as written, before env overrides and checks. Values that need
//! parsing are kept as strings here so that their errors can name the key
//! and the fix (serde's errors cannot).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address::ADDRESS_FIX;
use crate::country::{CountryCode, COUNTRY_FIX};
use crate::defaults;
use crate::env::{label, EnvOverride};
use crate::error::{excerpt, invalid, ConfigError};
use crate::schema::{
    AuditSection, Config, KeysSection, Limits, LogSection, NodeSection, PeerConfig, RetryPolicy,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub keys: KeysSection,
    #[serde(default, rename = "peer")]
    pub peers: Vec<RawPeer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: Option<String>,
    pub country: Option<String>,
    pub identity_key: Option<String>,
    pub data_dir: Option<String>,
    pub listen: Option<String>,
    pub admin_socket: Option<String>,
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub id: Option<String>,
    pub address: Option<String>,
    pub name: Option<String>,
    pub country: Option<String>,
    #[serde(default)]
    pub repinned_from: Vec<String>,
    #[serde(default)]
    pub rotated_from: Vec<String>,
    #[serde(default)]
    pub confirm_rotation: bool,
}

const LISTEN_FIX: &str =
    "write it as IP:PORT, e.g. \"0.0.0.0:7400\" (all interfaces) or \"127.0.0.1:7400\"; host names are not allowed here";
const ID_FIX: &str =
    "ask the peer's operator for their node id (`comity id` prints it) and copy it exactly";

impl RawConfig {
    /// Typed values; relative paths joined to `base_dir`. Not yet validated.
    pub(crate) fn into_config(
        self,
        base_dir: &Path,
        overrides: Vec<EnvOverride>,
    ) -> Result<Config, ConfigError> {
        let l = |key: &str| label(key, &overrides);
        let n = self.node;
        let missing = |key: &str, example: &str, var: &str| {
            invalid(
                l(key),
                "is missing",
                format!("add `{example}` under [node], or set {var}"),
            )
        };
        let name = n.name.ok_or_else(|| {
            missing(
                "node.name",
                "name = \"Ministry of Justice of …\"",
                "COMITY_NAME",
            )
        })?;
        let country = n
            .country
            .ok_or_else(|| missing("node.country", "country = \"FR\"", "COMITY_COUNTRY"))?
            .parse::<CountryCode>()
            .map_err(|e| invalid(l("node.country"), e.to_string(), COUNTRY_FIX))?;
        let listen = n
            .listen
            .ok_or_else(|| missing("node.listen", "listen = \"0.0.0.0:7400\"", "COMITY_LISTEN"))?;
        let listen = socket_addr(&listen, &l("node.listen"))?;
        let metrics_listen = match n.metrics_listen {
            Some(m) => Some(socket_addr(&m, &l("node.metrics_listen"))?),
            None => None,
        };
        let path = |v: Option<String>, key: &str, default: &str| -> Result<PathBuf, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_string());
            if v.trim().is_empty() {
                return Err(invalid(
                    l(key),
                    "is empty",
                    format!("give a path, or remove the key to use the default {default:?}"),
                ));
            }
            Ok(base_dir.join(v))
        };
        let identity_token = match n.identity_key.as_deref() {
            Some(v) if v.trim_start().starts_with("pkcs11:") => {
                Some(crate::TokenKey::parse(v).map_err(|e| {
                    invalid(
                        l("node.identity_key"),
                        format!("is not a usable PKCS#11 URI: {e}"),
                        "e.g. \"pkcs11:token=comity;object=comity-identity?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/comity/token.pin\"",
                    )
                })?)
            }
            _ => None,
        };
        let identity_key = match identity_token {
            Some(_) => base_dir.join(defaults::TOKEN_ENCRYPTION_KEY),
            None => path(n.identity_key, "node.identity_key", defaults::IDENTITY_KEY)?,
        };
        let node = NodeSection {
            name,
            country,
            identity_key,
            identity_token,
            data_dir: path(n.data_dir, "node.data_dir", defaults::DATA_DIR)?,
            listen,
            admin_socket: path(n.admin_socket, "node.admin_socket", defaults::ADMIN_SOCKET)?,
            metrics_listen,
        };
        let peers = self
            .peers
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.into_peer(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            node,
            limits: self.limits,
            retry: self.retry,
            log: self.log,
            audit: self.audit,
            keys: self.keys,
            peers,
            base_dir: base_dir.to_path_buf(),
            env_overrides: overrides,
        })
    }
}

impl RawPeer {
    fn into_peer(self, i: usize) -> Result<PeerConfig, ConfigError> {
        let key = |k: &str| format!("peer[{i}].{k}");
        let missing = |k: &str, fix: &str| invalid(key(k), "is missing", fix);
        let id = self
            .id
            .ok_or_else(|| missing("id", &format!("add `id = \"…\"`: {ID_FIX}")))?
            .parse()
            .map_err(|e: comity_protocol::identity::ParseNodeIdError| {
                invalid(key("id"), e.to_string(), ID_FIX)
            })?;
        let address = self.address.ok_or_else(|| {
            missing(
                "address",
                &format!("add `address = \"HOST:PORT\"`; {ADDRESS_FIX}"),
            )
        })?;
        let country = self
            .country
            .ok_or_else(|| {
                missing(
                    "country",
                    "add `country = \"FR\"`: the peer's ISO 3166-1 alpha-2 code",
                )
            })?
            .parse::<CountryCode>()
            .map_err(|e| invalid(key("country"), e.to_string(), COUNTRY_FIX))?;
        let ids = |list: &[String], name: &str| {
            list.iter()
                .map(|s| {
                    s.parse()
                        .map_err(|e: comity_protocol::identity::ParseNodeIdError| {
                            invalid(key(name), e.to_string(), ID_FIX)
                        })
                })
                .collect::<Result<Vec<comity_protocol::NodeId>, _>>()
        };
        let repinned_from = ids(&self.repinned_from, "repinned_from")?;
        let rotated_from = ids(&self.rotated_from, "rotated_from")?;
        Ok(PeerConfig {
            id,
            address,
            name: self.name.unwrap_or_default(),
            country,
            repinned_from,
            rotated_from,
            confirm_rotation: self.confirm_rotation,
        })
    }
}

fn socket_addr(v: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    v.trim().parse().map_err(|_| {
        invalid(
            key,
            format!("{:?} is not an IP address and port", excerpt(v)),
            LISTEN_FIX,
        )
    })
}
