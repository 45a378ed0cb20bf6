//! Adding and removing peers in the operator's file in place, keeping its
//! comments and layout (`comity peer add` must not wipe the documentation
//! an operator wrote into the file).

use std::io::Write;
use std::path::Path;

use comity_protocol::NodeId;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table, TableLike, Value};

use crate::env;
use crate::error::{invalid, ConfigError};
use crate::load::{base_dir_of, read_limited};
use crate::schema::{Config, PeerConfig};

/// `text` with one more `[[peer]]` table appended. Not validated: a
/// duplicate id or country is caught when the result is loaded.
pub fn add_peer(text: &str, peer: &PeerConfig) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text.parse().map_err(ConfigError::syntax)?;
    let mut t = Table::new();
    t["id"] = value(peer.id.to_string());
    t["address"] = value(peer.address.as_str());
    if !peer.name.is_empty() {
        t["name"] = value(peer.name.as_str());
    }
    t["country"] = value(peer.country.as_str());
    if peer.confirm_rotation {
        t["confirm_rotation"] = value(true);
    }
    // Comments after the last table are the document's trailing text. When
    // the new table goes at the very end, put it after them.
    let last = table_positions(&doc).max();
    let peers_last = match doc.get("peer") {
        None => true,
        Some(Item::ArrayOfTables(aot)) => aot.iter().last().and_then(Table::position) >= last,
        Some(_) => false,
    };
    let mut prefix = "\n".to_string();
    if peers_last {
        prefix.insert_str(0, doc.trailing().as_str().unwrap_or_default());
        doc.set_trailing("");
    }
    t.decor_mut().set_prefix(prefix);
    match doc.get_mut("peer") {
        None => {
            let mut aot = ArrayOfTables::new();
            aot.push(t);
            doc.insert("peer", Item::ArrayOfTables(aot));
        }
        Some(Item::ArrayOfTables(aot)) => aot.push(t),
        Some(Item::Value(Value::Array(arr))) => arr.push(t.into_inline_table()),
        Some(_) => return Err(not_a_peer_list()),
    }
    Ok(doc.to_string())
}

/// `text` without the `[[peer]]` whose id is `id` (however it was spelt).
pub fn remove_peer(text: &str, id: &NodeId) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text.parse().map_err(ConfigError::syntax)?;
    let matches = |v: Option<&Value>| is_id(v, id);
    let mut orphaned = None;
    let removed = match doc.get_mut("peer") {
        Some(Item::ArrayOfTables(aot)) => {
            let found = aot
                .iter()
                .position(|t| matches(t.get("id").and_then(Item::as_value)));
            if let Some(i) = found {
                let t = aot.get(i);
                orphaned = Some((t.and_then(Table::position), table_prefix(t)));
                aot.remove(i);
            }
            found.is_some()
        }
        Some(Item::Value(Value::Array(arr))) => {
            let before = arr.len();
            arr.retain(|v| !matches(v.as_inline_table().and_then(|t| t.get("id"))));
            arr.len() < before
        }
        None => false,
        Some(_) => return Err(not_a_peer_list()),
    };
    if let Some((position, comments)) = orphaned {
        // The comments above the removed table may document the file rather
        // than this peer: keep them, before whatever came next.
        if !comments.trim().is_empty() {
            keep_comments(&mut doc, position, comments);
        }
    }
    if !removed {
        return Err(invalid(
            "peer",
            format!("no [[peer]] has id {id}"),
            "check the id against `comity peer list`",
        ));
    }
    Ok(doc.to_string())
}

/// `text` with the `[[peer]]` whose id is `old` now pinned to `new`, and
/// `old` appended to its `repinned_from` after the keys of its
/// `rotated_from` (the whole key history of the identity cut out, which
/// leaves `rotated_from`); its `address` replaced when one is given (the
/// table's comments and other keys kept).
pub fn repin_peer(
    text: &str,
    old: &NodeId,
    new: &NodeId,
    address: Option<&str>,
) -> Result<String, ConfigError> {
    move_peer(
        text,
        old,
        new,
        address,
        "repinned_from",
        Some("rotated_from"),
    )
}

/// `text` with the `[[peer]]` whose id is `old` now pinned to `new` by
/// the peer's identity transition, and `old` appended to its
/// `rotated_from` (the table's comments and other keys kept).
pub fn rotate_peer(text: &str, old: &NodeId, new: &NodeId) -> Result<String, ConfigError> {
    move_peer(text, old, new, None, "rotated_from", None)
}

fn move_peer(
    text: &str,
    old: &NodeId,
    new: &NodeId,
    address: Option<&str>,
    list: &str,
    // A list whose keys move to `list` ahead of `old` (and which goes).
    absorbed: Option<&str>,
) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text.parse().map_err(ConfigError::syntax)?;
    let is_old = |v: Option<&Value>| is_id(v, old);
    let table: Option<&mut dyn TableLike> = match doc.get_mut("peer") {
        Some(Item::ArrayOfTables(aot)) => aot
            .iter_mut()
            .find(|t| is_old(t.get("id").and_then(Item::as_value)))
            .map(|t| t as &mut dyn TableLike),
        Some(Item::Value(Value::Array(arr))) => arr
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .find(|t| is_old(t.get("id")))
            .map(|t| t as &mut dyn TableLike),
        None => None,
        Some(_) => return Err(not_a_peer_list()),
    };
    let Some(t) = table else {
        return Err(invalid(
            "peer",
            format!("no [[peer]] has id {old}"),
            "check the id against `comity peer list`",
        ));
    };
    let mut moved = Vec::new();
    if let Some(item) = absorbed.and_then(|a| t.remove(a)) {
        for v in item.as_array().ok_or_else(not_an_id_list)? {
            moved.push(v.as_str().ok_or_else(not_an_id_list)?.to_string());
        }
    }
    moved.push(old.to_string());
    match t.get_mut(list) {
        None => {
            t.insert(list, value(Array::from_iter(moved)));
        }
        Some(item) => match item.as_array_mut() {
            Some(a) => a.extend(moved),
            None => return Err(not_an_id_list()),
        },
    }
    set_keeping_decor(t, "id", new.to_string());
    if let Some(address) = address {
        set_keeping_decor(t, "address", address.to_string());
    }
    Ok(doc.to_string())
}

/// Sets `key` in `t` to `v`, keeping the operator's spacing and comment
/// around the old value.
fn set_keeping_decor(t: &mut dyn TableLike, key: &str, v: String) {
    match t.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = Value::from(v);
            *old.decor_mut() = decor;
        }
        None => {
            t.insert(key, value(v));
        }
    }
}

/// Whether a peer table's `id` value is `id`, however it was spelt.
fn is_id(v: Option<&Value>, id: &NodeId) -> bool {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse::<NodeId>().ok())
        .is_some_and(|parsed| &parsed == id)
}

fn not_an_id_list() -> ConfigError {
    invalid(
        "peer.repinned_from",
        "is not a list of node ids",
        "write it as repinned_from = [\"…\"]",
    )
}

/// Document positions of the top-level tables (the schema has no nested
/// ones), array-of-tables entries included.
fn table_positions(doc: &DocumentMut) -> impl Iterator<Item = isize> + '_ {
    doc.as_table().iter().flat_map(|(_, item)| match item {
        Item::Table(t) => t.position().into_iter().collect::<Vec<_>>(),
        Item::ArrayOfTables(a) => a.iter().filter_map(Table::position).collect(),
        _ => Vec::new(),
    })
}

/// Prepends `comments` to the first table after `position`, or appends
/// them to the end of the document if there is none.
fn keep_comments(doc: &mut DocumentMut, position: Option<isize>, comments: String) {
    let next = position.and_then(|p| table_positions(doc).filter(|&q| q > p).min());
    let mut pending = Some(comments);
    if let Some(next) = next {
        for (_, item) in doc.as_table_mut().iter_mut() {
            let tables: Vec<&mut Table> = match item {
                Item::Table(t) => vec![t],
                Item::ArrayOfTables(a) => a.iter_mut().collect(),
                _ => Vec::new(),
            };
            for t in tables.into_iter().filter(|t| t.position() == Some(next)) {
                if let Some(c) = pending.take() {
                    let p = format!("{c}{}", table_prefix(Some(t)));
                    t.decor_mut().set_prefix(p);
                }
            }
        }
    }
    if let Some(c) = pending {
        let t = format!("{}{c}", doc.trailing().as_str().unwrap_or_default());
        doc.set_trailing(t);
    }
}

fn table_prefix(t: Option<&Table>) -> String {
    t.and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_string()
}

fn not_a_peer_list() -> ConfigError {
    invalid(
        "peer",
        "is not a list of [[peer]] tables",
        "write each peer as a [[peer]] table",
    )
}

impl Config {
    /// Appends `peer` to the file at `path`, checks that the result is a
    /// valid config (with the process environment, as the daemon would
    /// load it), then atomically replaces the file, keeping its mode.
    /// Returns the new config. Not safe against a concurrent editor.
    pub fn add_peer_to_file(path: &Path, peer: &PeerConfig) -> Result<Config, ConfigError> {
        edit_file(path, |text| add_peer(text, peer))
    }

    /// Removes the peer with `id` from the file at `path`, like
    /// [`Config::add_peer_to_file`].
    pub fn remove_peer_from_file(path: &Path, id: &NodeId) -> Result<Config, ConfigError> {
        edit_file(path, |text| remove_peer(text, id))
    }

    /// Pins the peer whose id is `old` to `new` in the file at `path`,
    /// `old` kept in its `repinned_from` (and its address replaced if
    /// `address` is given), like [`Config::add_peer_to_file`].
    pub fn repin_peer_in_file(
        path: &Path,
        old: &NodeId,
        new: &NodeId,
        address: Option<&str>,
    ) -> Result<Config, ConfigError> {
        edit_file(path, |text| repin_peer(text, old, new, address))
    }

    /// Moves the peer whose id is `old` to `new` in the file at `path` by
    /// its identity transition, `old` kept in its `rotated_from`.
    pub fn rotate_peer_in_file(
        path: &Path,
        old: &NodeId,
        new: &NodeId,
    ) -> Result<Config, ConfigError> {
        edit_file(path, |text| rotate_peer(text, old, new))
    }
}

fn edit_file(
    path: &Path,
    f: impl FnOnce(&str) -> Result<String, ConfigError>,
) -> Result<Config, ConfigError> {
    let target = std::fs::canonicalize(path).map_err(|e| ConfigError::io("resolve", path, e))?;
    let text = read_limited(&target)?;
    let new_text = f(&text)?;
    env::check_process_env()?;
    let config = Config::from_toml_str(&new_text, &base_dir_of(path)?, &env::process_env)?;
    replace_file(&target, &new_text)?;
    Ok(config)
}

/// Write a temporary file beside `path`, fsync, rename over, fsync the
/// directory: a crash leaves the old file or the new one, never half.
fn replace_file(path: &Path, text: &str) -> Result<(), ConfigError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |action| move |e| ConfigError::io(action, path, e);
    let perms = std::fs::metadata(path)
        .map_err(io("inspect"))?
        .permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".comity-config-")
        .tempfile_in(dir)
        .map_err(io("create a temporary file beside"))?;
    tmp.write_all(text.as_bytes()).map_err(io("write"))?;
    tmp.as_file()
        .set_permissions(perms)
        .map_err(io("set permissions on"))?;
    tmp.as_file().sync_all().map_err(io("sync"))?;
    tmp.persist(path)
        .map_err(|e| ConfigError::io("replace", path, e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ConfigError::io("sync directory", dir, e))
}
