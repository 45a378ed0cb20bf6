use std::path::Path;

use anyhow::{bail, Result};

use crate::args::AuditCommand;

pub fn run(_config: Option<&Path>, _cmd: AuditCommand) -> Result<()> {
    bail!("not yet: the audit log arrives with its own issue")
}
