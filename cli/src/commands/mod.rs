mod demo;
mod id;
mod init;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            dir,
            name,
            country,
            listen,
            json,
        } => init::run(&dir, &name, &country, listen, json),
        Command::Id { json } => id::run(&config_path(cli.config)?, json),
        Command::Demo => demo::run(),
    }
}

fn config_path(given: Option<PathBuf>) -> Result<PathBuf> {
    given.context(
        "no configuration given: pass --config DIR/comity.toml or set COMITY_CONFIG \
         (create a node with `comity init`)",
    )
}

/// Loads the config, naming the file in errors.
fn load_config(path: &std::path::Path) -> Result<comity_config::Config> {
    comity_config::Config::load(path).with_context(|| format!("{}", path.display()))
}
