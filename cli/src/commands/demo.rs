use anyhow::{bail, Result};

pub fn run(_keep: Option<std::path::PathBuf>) -> Result<()> {
    bail!(
        "not yet: the local three-country demo network arrives once the node, \
         audit log and admin CLI are built"
    )
}
