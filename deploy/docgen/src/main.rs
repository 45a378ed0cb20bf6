//! `comity-docgen OUT_DIR`: the man pages and shell completions of `comity`
//! and `comityd`, generated from their clap definitions, for the Debian
//! package (deploy/deb-build.sh runs it; nothing generated is checked in).
//!
//! Writes `OUT_DIR/man/` (`comity.1`, one `comity-SUBCOMMAND.1` per subcommand,
//! `comityd.8`) and `OUT_DIR/completions/{bash,zsh,fish}/` under the file
//! names each shell looks for. Where they go in the package is said once,
//! in node/Cargo.toml's `[package.metadata.deb]` assets.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

// The two grammars are included as source, not linked: both live in
// binaries (comity-cli has no library, and comityd's arguments are a module
// of the binary), and each file uses nothing but clap and std.
#[allow(dead_code)]
#[path = "../../../cli/src/args.rs"]
mod cli_args;
#[allow(dead_code)]
#[path = "../../../node/src/daemon_args.rs"]
mod daemon_args;

/// Shells whose completions the package ships, with the directory each
/// one's files go to under `completions/`.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: comity-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("comity-docgen: {}: {e}", Path::new(&out).display());
            ExitCode::from(1)
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    // comity(1) and a page per subcommand (comity-peer-add(1), ...), which
    // comity(1)'s SUBCOMMANDS section names.
    clap_mangen::generate_to(cli_args::Cli::command(), &man)?;
    // A daemon's page belongs in section 8 (system administration).
    clap_mangen::Man::new(daemon_args::Args::command())
        .section("8")
        .generate_to(&man)?;

    for (shell, dir) in SHELLS {
        let dir = out.join("completions").join(dir);
        std::fs::create_dir_all(&dir)?;
        clap_complete::generate_to(shell, &mut cli_args::Cli::command(), "comity", &dir)?;
        clap_complete::generate_to(shell, &mut daemon_args::Args::command(), "comityd", &dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every subcommand not hidden, at any depth, as its man page's name.
    fn page_names(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{prefix}-{}", sub.get_name());
            page_names(sub, &name, out);
            out.push(name);
        }
    }

    #[test]
    fn writes_a_page_for_each_command_and_completions_for_each_shell() {
        let out = tempfile::tempdir().unwrap();
        generate(out.path()).unwrap();

        let comityd = read(&out.path().join("man/comityd.8"));
        assert!(
            comityd.starts_with(".ie \\n(.g .ds Aq"),
            "not roff: {comityd:.80}"
        );
        assert!(
            comityd.contains(".TH comityd 8"),
            "comityd.8 is not in section 8"
        );
        for flag in ["\\-\\-config", "\\-\\-check", "\\-\\-log\\-format"] {
            assert!(comityd.contains(flag), "comityd.8 does not document {flag}");
        }

        let mut pages = Vec::new();
        page_names(&cli_args::Cli::command(), "comity", &mut pages);
        assert!(pages.contains(&"comity-peer-add".to_string()), "{pages:?}");
        let comity = read(&out.path().join("man/comity.1"));
        for page in &pages {
            let text = read(&out.path().join(format!("man/{page}.1")));
            assert!(
                text.contains(&format!(".TH {page} 1")),
                "{page}.1 has no title"
            );
        }
        // comity(1) points to the top-level subcommands' pages.
        assert!(
            comity.contains("comity\\-peer(1)"),
            "comity.1 does not refer to comity-peer(1)"
        );

        for (file, needle) in [
            ("bash/comity.bash", "peer"),
            ("bash/comityd.bash", "--check"),
            ("zsh/_comity", "#compdef comity"),
            ("zsh/_comityd", "#compdef comityd"),
            ("fish/comity.fish", "complete -c comity"),
            ("fish/comityd.fish", "complete -c comityd"),
        ] {
            let text = read(&out.path().join("completions").join(file));
            assert!(text.contains(needle), "{file} lacks {needle:?}");
        }
    }
}
