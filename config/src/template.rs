//! The commented file `comity init` writes: the example with this node's
//! values filled in, so an operator finds every key documented in place.

use toml_edit::{value, DocumentMut};

use crate::error::ConfigError;
use crate::schema::NodeSection;
use crate::EXAMPLE_TOML;

/// [`EXAMPLE_TOML`] with `[node]` name, country and listen set from `node`.
pub fn commented_config(node: &NodeSection) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = EXAMPLE_TOML.parse().map_err(ConfigError::syntax)?;
    doc["node"]["name"] = value(node.name.as_str());
    doc["node"]["country"] = value(node.country.as_str());
    doc["node"]["listen"] = value(node.listen.to_string());
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn filled_template_keeps_comments_and_loads_back() {
        let node = NodeSection::new(
            "Attorney General of Borduria",
            "BO".parse().unwrap(),
            "127.0.0.1:7999".parse().unwrap(),
        );
        let text = commented_config(&node).unwrap();
        assert!(text.contains("# Human name of this central authority"));
        let c = Config::from_toml_str(&text, std::path::Path::new("/tmp"), &|_| None).unwrap();
        assert_eq!(c.node.name, "Attorney General of Borduria");
        assert_eq!(c.node.country.as_str(), "BO");
        assert_eq!(c.node.listen.port(), 7999);
    }
}
