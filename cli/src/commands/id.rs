use std::path::Path;

use anyhow::Result;

pub fn run(config: &Path, json: bool) -> Result<()> {
    let config = super::load_config(config)?;
    // The key file names the node id (for a token node too): no PIN needed.
    let id = comity_config::node_id_in_key_file(&config.node.identity_key)?;
    if json {
        let v = serde_json::json!({
            "id": id.to_string(),
            "name": config.node.name,
            "country": config.node.country.as_str(),
        });
        println!("{v}");
    } else {
        println!("{id}");
    }
    Ok(())
}
