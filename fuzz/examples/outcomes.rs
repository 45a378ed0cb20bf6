//! Counts how far the inputs of a corpus get in a labelled target (see
//! `comity_fuzz::run_labelled`): how many reach the signature, proof and
//! consistency checks rather than stopping at parsing.
//!
//! ```text
//! cargo run --release --example outcomes -- checkpoint_note corpus/checkpoint_note seeds/checkpoint_note
//! ```

use std::collections::BTreeMap;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: outcomes TARGET DIR...");
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    for dir in args {
        for entry in std::fs::read_dir(&dir)? {
            let data = std::fs::read(entry?.path())?;
            files += 1;
            bytes += data.len() as u64;
            let label = comity_fuzz::run_labelled(&target, &data).expect("a labelled target");
            *counts.entry(label).or_default() += 1;
        }
    }
    println!("{target}: {files} inputs, {bytes} bytes");
    for (label, n) in counts {
        println!("  {n:>7}  {label}");
    }
    Ok(())
}
