#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use comity_config::{Config, ConfigError};
use comity_protocol::{Identity, NodeId, Timestamp};

pub fn node_id(seed: u8) -> NodeId {
    Identity::from_seeds(&[seed; 32], &[seed; 32], Timestamp(0)).id()
}

pub fn no_env(_: &str) -> Option<String> {
    None
}

pub const MINIMAL: &str = r#"
[node]
name = "Ministry of Justice of Arcadia"
country = "AR"
listen = "127.0.0.1:7400"
"#;

pub fn with_peers(peers: &[(NodeId, &str, &str)]) -> String {
    let mut s = MINIMAL.to_string();
    for (id, addr, cc) in peers {
        s.push_str(&format!(
            "\n[[peer]]\nid = \"{id}\"\naddress = \"{addr}\"\nname = \"Ministry of {cc}\"\ncountry = \"{cc}\"\n"
        ));
    }
    s
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("/etc/comity"), &no_env)
}

pub fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Config::from_toml_str(text, Path::new("/etc/comity"), &env)
}
