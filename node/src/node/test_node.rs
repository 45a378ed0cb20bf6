//! A node started in this process with a peer that is pinned but never
//! started (nothing is delivered), for the tests beside the facade.
#![allow(clippy::unwrap_used)]

use comity_config::Config;
use comity_protocol::{Identity, Timestamp};
use comity_tests::free_port;

use std::io::Cursor;

use crate::node::Node;
use crate::store::StagedAttachment;

pub(crate) struct Pair {
    /// Holds the node's directory until the test ends.
    pub _dir: tempfile::TempDir,
    pub node: Node,
    pub peer: Identity,
}

pub(crate) async fn node_with_peer(extra_limits: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate(Timestamp::now());
    let peer = Identity::generate(Timestamp::now());
    let text = format!(
        "[node]\nname = \"AR\"\ncountry = \"AR\"\nlisten = \"127.0.0.1:{}\"\n\
         [limits]\ndisk_reserve_mib = 0\ndisk_reserve_percent = 0\n{extra_limits}\n\
         [[peer]]\nid = \"{}\"\naddress = \"127.0.0.1:{}\"\ncountry = \"BO\"\n",
        free_port(),
        peer.id(),
        free_port()
    );
    let config = Config::from_toml_str(&text, dir.path(), &|_| None).unwrap();
    let node = Node::start_with(config, me).await.unwrap();
    // The peer's key known, as after a first contact: acceptance seals.
    node.context()
        .store
        .put_peer_key(peer.public().cert())
        .unwrap();
    Pair {
        _dir: dir,
        node,
        peer,
    }
}

/// Uploads `content` as `name` and returns it staged.
pub(super) async fn upload(node: &Node, name: &str, content: &[u8]) -> StagedAttachment {
    let up = node
        .begin_upload(name, "application/pdf", content.len() as u64)
        .unwrap();
    let content = content.to_vec();
    let staged = tokio::task::spawn_blocking(move || up.copy_in(Cursor::new(content)))
        .await
        .unwrap()
        .unwrap();
    node.commit().await.unwrap();
    staged
}
