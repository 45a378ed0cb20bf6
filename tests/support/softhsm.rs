//! A private SoftHSM2 token for tests: its own configuration and token
//! directory (the system's configuration is not readable by everyone, and
//! tests must not touch the machine's tokens).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `softhsm2` package puts the PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token.
pub const PIN: &str = "246813";

pub struct SoftHsm {
    dir: tempfile::TempDir,
    pub label: String,
}

impl SoftHsm {
    /// A fresh token labelled `label`, or `None` (with a line saying how to
    /// get it) when SoftHSM2 is not installed. Under CI (`CI` or
    /// `COMITY_REQUIRE_SOFTHSM` set, as `.ci/run` does) a missing SoftHSM2
    /// is a failure, never a skip.
    pub fn new(label: &str) -> Option<SoftHsm> {
        if !Path::new(MODULE).exists() || which("softhsm2-util").is_none() {
            let how =
                "SoftHSM2 is not installed: `apt-get install softhsm2` to run the token tests";
            let required = ["CI", "COMITY_REQUIRE_SOFTHSM"]
                .iter()
                .any(|v| std::env::var_os(v).is_some());
            assert!(!required, "{how}");
            eprintln!("skipped: {how}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hsm = SoftHsm {
            dir,
            label: label.to_string(),
        };
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", hsm.conf())
            .args(["--init-token", "--free", "--label", label, "--pin", PIN])
            .args(["--so-pin", "13572468"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The module reads SOFTHSM2_CONF when it is loaded: in this process
        // (comity init, the tests' own token sessions) and in the daemons,
        // which inherit it.
        std::env::set_var("SOFTHSM2_CONF", hsm.conf());
        Some(hsm)
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// The `identity_key` URI of the key labelled `object` on this token.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={MODULE}&pin-source=file:{}",
            self.label,
            self.pin_file().display()
        )
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}
