//! Adding and removing peers keeps the operator's file intact.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::os::unix::fs::PermissionsExt;

use comity_config::{
    add_peer, remove_peer, repin_peer, rotate_peer, Config, CountryCode, PeerConfig, EXAMPLE_TOML,
};
use common::*;

fn peer(seed: u8, cc: &str) -> PeerConfig {
    PeerConfig {
        id: node_id(seed),
        address: format!("{}.example:7400", cc.to_lowercase()),
        name: format!("Ministry of Justice of {cc}"),
        country: cc.parse::<CountryCode>().unwrap(),
        repinned_from: Vec::new(),
        rotated_from: Vec::new(),
        confirm_rotation: false,
    }
}

#[test]
fn add_and_remove_keep_comments() {
    let one = add_peer(EXAMPLE_TOML, &peer(1, "BO")).unwrap();
    assert!(one.starts_with(EXAMPLE_TOML), "existing text changed");
    let two = add_peer(&one, &peer(2, "SY")).unwrap();
    let c = parse(&two).unwrap();
    assert_eq!(c.peers, vec![peer(1, "BO"), peer(2, "SY")]);

    let back = remove_peer(&two, &node_id(1)).unwrap();
    assert!(back.contains("# Pinned peers, one [[peer]] table each"));
    assert_eq!(parse(&back).unwrap().peers, vec![peer(2, "SY")]);
    let none = remove_peer(&back, &node_id(2)).unwrap();
    assert_eq!(none.trim_end(), EXAMPLE_TOML.trim_end());
    let e = remove_peer(&back, &node_id(1)).unwrap_err();
    assert_eq!(e.key(), Some("peer"), "{e}");
}

#[test]
fn inline_peer_arrays_are_edited_too() {
    let text = format!("peer = []\n{MINIMAL}");
    let added = add_peer(&text, &peer(1, "BO")).unwrap();
    assert_eq!(parse(&added).unwrap().peers, vec![peer(1, "BO")]);
    let removed = remove_peer(&added, &node_id(1)).unwrap();
    assert!(parse(&removed).unwrap().peers.is_empty());
}

#[test]
fn file_edits_are_validated_and_keep_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("comity.toml");
    std::fs::write(&path, EXAMPLE_TOML).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let c = Config::add_peer_to_file(&path, &peer(1, "BO")).unwrap();
    assert_eq!(c.peers.len(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(EXAMPLE_TOML));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // A second peer of the same country is refused and the file untouched.
    let e = Config::add_peer_to_file(&path, &peer(2, "BO")).unwrap_err();
    assert_eq!(e.key(), Some("peer[1].country"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    let c = Config::remove_peer_from_file(&path, &node_id(1)).unwrap();
    assert!(c.peers.is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temporary file left behind"
    );
}

#[test]
fn peers_in_the_middle_of_the_file() {
    let text = format!(
        "{MINIMAL}\n# first peer\n[[peer]]\nid = \"{}\"\naddress = \"bo:1\"\ncountry = \"BO\"\n\n[log]\nformat = \"json\"\n# the end\n",
        node_id(1)
    );
    let added = add_peer(&text, &peer(2, "SY")).unwrap();
    let c = parse(&added).unwrap();
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.log.format, comity_config::LogFormat::Json);
    assert!(added.contains("format = \"json\"\n# the end\n"), "{added}");
    let removed = remove_peer(&added, &node_id(1)).unwrap();
    assert!(removed.contains("# first peer"));
    assert_eq!(parse(&removed).unwrap().peers, vec![peer(2, "SY")]);
}

#[test]
fn a_repin_moves_the_id_keeps_the_comments_and_remembers_the_key_cut_out() {
    let text = format!(
        "{MINIMAL}\n# Bolivia: repinned after the call of 2026-12-01\n[[peer]]\nid = \"{}\" # read out by phone\naddress = \"bo:1\"\ncountry = \"BO\"\n",
        node_id(1)
    );
    let once = repin_peer(&text, &node_id(1), &node_id(2), None).unwrap();
    assert!(once.contains("# Bolivia: repinned after the call of 2026-12-01"));
    assert!(once.contains("# read out by phone"));
    let c = parse(&once).unwrap();
    assert_eq!(c.peers[0].id, node_id(2));
    assert_eq!(c.peers[0].repinned_from, vec![node_id(1)]);
    let twice = repin_peer(&once, &node_id(2), &node_id(3), Some("bo.new:4433")).unwrap();
    let c = parse(&twice).unwrap();
    assert_eq!(c.peers[0].id, node_id(3));
    assert_eq!(c.peers[0].repinned_from, vec![node_id(1), node_id(2)]);
    assert_eq!(c.peers[0].address, "bo.new:4433");
    assert_eq!(parse(&once).unwrap().peers[0].address, "bo:1");
    assert!(c.peers[0].cut_out(&node_id(1)) && !c.peers[0].cut_out(&node_id(3)));
    let e = repin_peer(&twice, &node_id(1), &node_id(4), None).unwrap_err();
    assert_eq!(e.key(), Some("peer"), "{e}");

    // Inline arrays of peers too.
    let inline = format!(
        "peer = [{{ id = \"{}\", address = \"bo:1\", country = \"BO\" }}]\n{MINIMAL}",
        node_id(1)
    );
    let c = parse(&repin_peer(&inline, &node_id(1), &node_id(2), None).unwrap()).unwrap();
    assert_eq!(c.peers[0].repinned_from, vec![node_id(1)]);
}

#[test]
fn a_repin_cuts_out_the_keys_the_peer_rotated_from_too() {
    let rotated = rotate_peer(
        &add_peer(MINIMAL, &peer(1, "BO")).unwrap(),
        &node_id(1),
        &node_id(2),
    )
    .unwrap();
    assert_eq!(
        parse(&rotated).unwrap().peers[0].rotated_from,
        vec![node_id(1)]
    );
    let c = parse(&repin_peer(&rotated, &node_id(2), &node_id(3), None).unwrap()).unwrap();
    assert_eq!(c.peers[0].id, node_id(3));
    assert_eq!(c.peers[0].repinned_from, vec![node_id(1), node_id(2)]);
    assert!(c.peers[0].rotated_from.is_empty());
    assert!(c.peers[0].cut_out(&node_id(1)) && c.peers[0].cut_out(&node_id(2)));
}

#[test]
fn a_key_cut_out_is_never_pinned_again() {
    let one = repin_peer(
        &add_peer(MINIMAL, &peer(1, "BO")).unwrap(),
        &node_id(1),
        &node_id(2),
        None,
    )
    .unwrap();
    // Back to the cut-out key, or another peer with it: both refused.
    let back = repin_peer(&one, &node_id(2), &node_id(1), None).unwrap();
    let e = parse(&back).unwrap_err();
    assert_eq!(e.key(), Some("peer[0].id"), "{e}");
    let other = add_peer(&one, &peer(1, "SY")).unwrap();
    let e = parse(&other).unwrap_err();
    assert_eq!(e.key(), Some("peer[1].id"), "{e}");
    assert!(e.to_string().contains("repinned_from"), "{e}");
}
