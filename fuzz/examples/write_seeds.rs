//! Writes valid encodings for every fuzz target to `fuzz/seeds/<target>/`.
//!
//! ```text
//! cd fuzz && cargo run --example write_seeds
//! ```
//!
//! The seeds are small and deterministic (fixed keys and RNG seeds), so
//! they are committed; libFuzzer reads them as a second corpus directory
//! and writes what it finds to `fuzz/corpus/<target>/` (ignored by git).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let seeds = comity_fuzz::seeds();
    for (target, name, bytes) in &seeds {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        std::fs::write(target_dir.join(name), bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), dir.display());
    Ok(())
}
