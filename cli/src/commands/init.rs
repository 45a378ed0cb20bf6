//! `comity init`: a new node on disk, ready for `comityd --config`.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use comity_config::{commented_config, write_new_key_file, CountryCode, NodeSection};
use comity_protocol::{Identity, Timestamp};

const CONFIG_FILE: &str = "comity.toml";

/// A new node on disk; returns its id and config path.
pub fn create(
    dir: &Path,
    name: &str,
    country: &str,
    listen: SocketAddr,
    tweak: impl FnOnce(String) -> String,
) -> Result<(comity_protocol::NodeId, std::path::PathBuf)> {
    let country: CountryCode = country.parse()?;
    let node = NodeSection::new(name, country, listen);
    let config_path = dir.join(CONFIG_FILE);
    let key_path = dir.join(&node.identity_key);
    for existing in [&config_path, &key_path] {
        if existing.exists() {
            bail!(
                "{} already exists: {} holds a node; refusing to overwrite it \
                 (choose another --dir)",
                existing.display(),
                dir.display()
            );
        }
    }
    let text = tweak(commented_config(&node)?);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join(&node.data_dir))
        .with_context(|| format!("cannot create {}", dir.display()))?;

    let identity = Identity::generate(Timestamp::now());
    write_new_key_file(&key_path, &identity)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&config_path)
        .with_context(|| format!("cannot create {}", config_path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", config_path.display()))?;

    Ok((identity.id(), config_path))
}

pub fn run(dir: &Path, name: &str, country: &str, listen: SocketAddr, json: bool) -> Result<()> {
    let (id, config_path) = create(dir, name, country, listen, |t| t)?;
    let country = country.trim().to_ascii_uppercase();
    let key_path = dir.join(comity_config::defaults::IDENTITY_KEY);
    // Pasted into another operator's shell: the name goes in single quotes
    // (nothing expands in them), each `'` written as `'\''`.
    let pin = format!(
        "comity peer add --id {id} --addr {listen} --name {} --country {country}",
        shell_quote(name)
    );
    if json {
        let v = serde_json::json!({
            "id": id.to_string(),
            "config": config_path,
            "identity_key": key_path,
            "pin_command": pin,
        });
        println!("{v}");
    } else {
        println!("Created node {name:?} ({country}) in {}", dir.display());
        println!("  node id:  {id}");
        println!("  config:   {}", config_path.display());
        println!(
            "  keys:     {} (mode 0600, keep it secret)",
            key_path.display()
        );
        println!();
        println!("Give this line to the operators of the peers that will pin this node:");
        println!("  {pin}");
        if listen.ip().is_unspecified() {
            println!("  (replace {} with an address they can reach)", listen.ip());
        }
        println!();
        println!("Start it with: comityd --config {}", config_path.display());
    }
    Ok(())
}

/// `s` as one POSIX shell word that expands to exactly `s`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoted_names_do_not_expand() {
        assert_eq!(shell_quote("Ministry of Justice"), "'Ministry of Justice'");
        assert_eq!(shell_quote("$(rm -rf ~) `x`"), "'$(rm -rf ~) `x`'");
        assert_eq!(shell_quote("Procureur d'État"), "'Procureur d'\\''État'");
        // And a shell gives back exactly the name.
        for name in ["$(touch /tmp/x) `id` $HOME", "d'État \"q\" \\ ;|&"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(name)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), name);
        }
    }
}
