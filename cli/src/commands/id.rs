use std::path::Path;

use anyhow::Result;

pub fn run(config: &Path, json: bool) -> Result<()> {
    let config = super::load_config(config)?;
    let identity = comity_config::load_key_file(&config.node.identity_key)?;
    if json {
        let v = serde_json::json!({
            "id": identity.id().to_string(),
            "name": config.node.name,
            "country": config.node.country.as_str(),
        });
        println!("{v}");
    } else {
        println!("{}", identity.id());
    }
    Ok(())
}
