//! `comity init`: a new node on disk, ready for `comityd --config`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use comity_client::init::create_node;
use comity_client::Settings;

pub fn run(
    dir: &Path,
    name: &str,
    country: &str,
    listen: SocketAddr,
    pkcs11: Option<String>,
    predecessor: Option<&Path>,
    json: bool,
) -> Result<()> {
    // Checked before anything is created.
    let predecessor = match predecessor {
        Some(path) => {
            use comity_protocol::audit::predecessor::PredecessorFile;
            // A checkpoint and a few statements: a few KiB.
            let len = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            anyhow::ensure!(
                len <= comity_protocol::audit::predecessor::MAX_PREDECESSOR_FILE,
                "{} is {len} bytes: not a predecessor checkpoint",
                path.display()
            );
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let p = PredecessorFile::parse(&text)
                .and_then(|f| f.check())
                .with_context(|| format!("{} does not name a predecessor log", path.display()))?;
            Some((text, p))
        }
        None => None,
    };
    let on_token = pkcs11.is_some();
    let settings = Settings {
        identity_token: pkcs11,
        ..Settings::default()
    };
    // The configuration is checked as written, without this shell's
    // environment (which the daemon may not share).
    let new = create_node(dir, name, country, listen, &settings, &|_| None)?;
    let (id, config_path, key_path) = (new.id, new.config_path.clone(), new.key_path.clone());
    // In the data directory `create_node` made (0700), as a new 0600 file.
    if let Some((note, _)) = &predecessor {
        let path = new
            .config
            .node
            .data_dir
            .join(comity_config::PREDECESSOR_FILE);
        super::write_new_file(&path, |file| Ok(file.write_all(note.as_bytes())?))?;
    }
    let country = new.config.node.country.as_str();
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
            "identity_key_on_token": on_token,
            "pin_command": pin,
        });
        println!("{v}");
    } else {
        println!("Created node {name:?} ({country}) in {}", dir.display());
        println!("  node id:  {id}");
        println!("  config:   {}", config_path.display());
        if on_token {
            println!(
                "  identity: on the token ({})",
                new.config
                    .node
                    .identity_token
                    .as_ref()
                    .map(|t| t.uri())
                    .unwrap_or_default()
            );
            println!(
                "  keys:     {} (the encryption key; mode 0600, keep it secret)",
                key_path.display()
            );
        } else {
            println!(
                "  keys:     {} (mode 0600, keep it secret)",
                key_path.display()
            );
        }
        println!();
        println!("Give this line to the operators of the peers that will pin this node:");
        println!("  {pin}");
        if listen.ip().is_unspecified() {
            println!("  (replace {} with an address they can reach)", listen.ip());
        }
        println!();
        if let Some((_, p)) = &predecessor {
            println!(
                "Its log begins by naming the log of {} (checkpoint of size {}), whose key was lost.",
                p.node, p.size
            );
        }
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
