#!/bin/sh
# Builds the Debian package target/debian/comity_VERSION-REV_ARCH.deb and its
# debug symbols, comity-dbgsym_VERSION-REV_ARCH.ddeb.
#
#   deploy/deb-build.sh        # needs cargo-deb (deploy/deb-check.sh installs it), gzip
#
# 1. release build of comityd, comity and comity-docgen (--locked);
# 2. comity-docgen writes the man pages and completions from the clap
#    definitions into TARGET/release/deb-assets/ (gzipped man pages, as
#    Debian wants them); the unit is deploy/comityd.service with /usr/bin/
#    for /usr/local/bin/ in its Exec lines;
# 3. `cargo deb --no-build` packs what node/Cargo.toml's
#    [package.metadata.deb] lists, with deploy/debian/ as maintainer scripts.
# Prints the path of the .deb last.

set -eu
cd "$(dirname "$0")/.." || exit 1
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
case $TARGET in /*) ;; *) TARGET=$(pwd)/$TARGET ;; esac
STAGE=$TARGET/release/deb-assets

cargo deb --version >/dev/null 2>&1 ||
    { echo "deb-build.sh: cargo-deb is missing (cargo install cargo-deb --version 3.8.0 --locked)" >&2; exit 1; }

cargo build --release --locked -p comity-node -p comity-cli -p comity-docgen

rm -rf "$STAGE"
mkdir -p "$STAGE"
"$TARGET/release/comity-docgen" "$STAGE"
# -n: no name or time stamp in the header, so the same page packs the same.
gzip -9n "$STAGE"/man/*
sed '/^Exec/s|/usr/local/bin/|/usr/bin/|g' deploy/comityd.service >"$STAGE/comityd.service"
if grep '^Exec' "$STAGE/comityd.service" | grep -q /usr/local/; then
    echo "deb-build.sh: the packaged unit still runs something from /usr/local/" >&2
    exit 1
fi

# The Debian changelog's version must be the crate's, or the package says
# one version and its changelog another.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
changelog=$(sed -n '1s/^comity (\([^)-]*\)-[^)]*).*/\1/p' deploy/debian/changelog)
if [ "$version" != "$changelog" ]; then
    echo "deb-build.sh: deploy/debian/changelog is for $changelog, the workspace is $version:" \
        "add a changelog entry" >&2
    exit 1
fi

# It prints the paths of the .deb and of comity-dbgsym's .ddeb.
out=$(cargo deb -p comity-node --no-build --locked --output "$TARGET/debian/" "$@")
deb=$(printf '%s\n' "$out" | grep '\.deb$' | tail -n 1)
[ -f "$deb" ] || { echo "deb-build.sh: cargo deb named no .deb: $out" >&2; exit 1; }
echo "$deb"
