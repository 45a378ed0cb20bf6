#!/bin/sh
# Container entrypoint of the Comity image: first start, id exchange, pins,
# then `exec comityd` (so comityd is PID 1 and receives SIGTERM itself).
#
#   entrypoint.sh                    first start if needed, then comityd
#   entrypoint.sh --log-format json  the same, extra arguments go to comityd
#   entrypoint.sh comity id          anything else is run as given
#
# Environment (all optional once the node exists):
#   COMITY_CONFIG     the node's config file; its directory is the node's own
#                     volume (default /var/lib/comity/comity.toml)
#   COMITY_NAME       first start: human name of this central authority
#   COMITY_COUNTRY    first start: this node's ISO 3166-1 alpha-2 code
#   COMITY_LISTEN     first start: QUIC address, IP:PORT (default 0.0.0.0:7400)
#   ADVERTISE         HOST:PORT under which the peers reach this node, written
#                     next to the published id (default: hostname and the
#                     listen port)
#   IDS_DIR           shared directory for the ids (default /shared/ids); only
#                     public node ids go there, never keys
#   PEERS             the peers to pin: "BO=borduria:7400 CA=carpania:7400";
#                     "CC" alone takes the address the peer published
#   PEER_WAIT_SECS    how long to wait for the peers' ids (default 120); a peer
#                     still missing then is pinned on a later start, or by hand
#
# COMITY_NAME, COMITY_COUNTRY and COMITY_LISTEN are also environment overrides
# that comityd itself applies (see config/comity.example.toml).
#
# Trust: a pin is only ever added, never changed. If a peer's published id
# differs from the one pinned, this script says so and leaves the pin alone:
# a changed key must be confirmed between the operators out of band.

set -eu

CONFIG=${COMITY_CONFIG:-/var/lib/comity/comity.toml}
IDS_DIR=${IDS_DIR:-/shared/ids}
PEERS=${PEERS:-}
PEER_WAIT_SECS=${PEER_WAIT_SECS:-120}

log() { printf 'comity-entrypoint: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

case "${1-}" in
    '' | -*) ;;
    *) exec "$@" ;;
esac

umask 077
case $PEER_WAIT_SECS in
    '' | *[!0-9]*) die "PEER_WAIT_SECS must be a whole number of seconds, not '$PEER_WAIT_SECS'" ;;
esac
NODE_DIR=$(dirname -- "$CONFIG")
[ "$(basename -- "$CONFIG")" = comity.toml ] ||
    die "COMITY_CONFIG must name a file called comity.toml (comity init writes that name), not $CONFIG"

upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }

# A country code: two ASCII letters.
valid_cc() {
    case $1 in
        [A-Za-z][A-Za-z]) return 0 ;;
        *) return 1 ;;
    esac
}

# A node id as `comity id` prints it: lowercase base32 groups and dashes.
# (comityd checks the length and checksum when it loads the config.)
valid_id() {
    case $1 in
        '' | *[!a-z2-7-]*) return 1 ;;
        *) return 0 ;;
    esac
}

# HOST:PORT without characters that would need quoting in TOML.
valid_addr() {
    case $(printf '%s' "$1" | tr -d '[]') in
        '' | *[!A-Za-z0-9.:_-]* | *:) return 1 ;;
        *:*) return 0 ;;
        *) return 1 ;;
    esac
}

# Text safe inside a TOML basic string: no quotes, backslashes or controls.
toml_text() { printf '%s' "$1" | tr -d '"\\[:cntrl:]'; }

# "CC ID" for every [[peer]] table of the config, one per line.
pinned_peers() {
    awk '
        function flush() { if (inpeer) print toupper(cc), id; inpeer = 0; cc = ""; id = "" }
        function val(line) {
            sub(/^[^=]*=[ \t]*/, "", line); sub(/#.*/, "", line)
            gsub(/["\047 \t\r]/, "", line); return line
        }
        /^[ \t]*\[\[[ \t]*peer[ \t]*\]\][ \t]*(#.*)?$/ { flush(); inpeer = 1; next }
        /^[ \t]*\[/ { flush(); next }
        inpeer && /^[ \t]*country[ \t]*=/ { cc = val($0) }
        inpeer && /^[ \t]*id[ \t]*=/ { id = val($0) }
        END { flush() }
    ' "$CONFIG"
}

# One value ("id", "address" or "name") of a published id file.
published() { sed -n "s/^$1=//p" "$2" | head -n 1; }

# --- first start: keys, config and data directory in the node's volume ------
if [ ! -e "$CONFIG" ]; then
    [ -n "${COMITY_NAME:-}" ] || die "first start: set COMITY_NAME (the central authority's name)"
    [ -n "${COMITY_COUNTRY:-}" ] || die "first start: set COMITY_COUNTRY (two letters, e.g. AR)"
    log "first start: creating the node in $NODE_DIR"
    comity init --dir "$NODE_DIR" --name "$COMITY_NAME" --country "$COMITY_COUNTRY" \
        --listen "${COMITY_LISTEN:-0.0.0.0:7400}" >&2 ||
        die "comity init failed; if $NODE_DIR holds a half-created node (keys but no comity.toml), inspect and empty the volume"
fi

ID=$(comity --config "$CONFIG" id) || die "cannot read this node's id from $CONFIG"
SELF=$(comity --config "$CONFIG" id --json) || die "cannot read this node's id from $CONFIG"
CC=$(upper "$(printf '%s' "$SELF" | sed -n 's/.*"country": *"\([A-Za-z][A-Za-z]\)".*/\1/p')")
NAME=$(printf '%s' "$SELF" | sed -n 's/.*"name": *"\([^"]*\)".*/\1/p')
valid_cc "$CC" || die "cannot read this node's country from $CONFIG"
log "this node: $CC $ID"

# --- publish this node's id (public) for the peers ---------------------------
if [ -d "$IDS_DIR" ] && [ -w "$IDS_DIR" ]; then
    listen=${COMITY_LISTEN:-$(sed -n 's/^[ \t]*listen[ \t]*=[ \t]*"\([^"]*\)".*/\1/p' "$CONFIG" | head -n 1)}
    advertise=${ADVERTISE:-$(uname -n):${listen##*:}}
    tmp=$(mktemp "$IDS_DIR/.$CC.id.XXXXXX")
    {
        printf '# Comity node id of %s, published by its container. Public, not secret.\n' "$CC"
        printf 'id=%s\naddress=%s\nname=%s\n' "$ID" "$advertise" "$(toml_text "$NAME")"
    } >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$IDS_DIR/$CC.id"
    log "published $IDS_DIR/$CC.id ($advertise)"
elif [ -n "$PEERS" ]; then
    log "warning: $IDS_DIR is missing or not writable: this node's id was not published"
fi

# --- pin the peers listed in PEERS --------------------------------------------
deadline=$(($(date +%s) + PEER_WAIT_SECS))
for entry in $PEERS; do
    pcc=$(upper "${entry%%=*}")
    paddr=${entry#*=}
    [ "$paddr" = "$entry" ] && paddr=
    valid_cc "$pcc" || die "PEERS: '$entry' does not start with a two-letter country code"
    [ "$pcc" != "$CC" ] || die "PEERS: $pcc is this node's own country"

    pinned=$(pinned_peers | awk -v cc="$pcc" '$1 == cc { print $2; exit }')
    file=$IDS_DIR/$pcc.id
    if [ -n "$pinned" ]; then
        if [ -s "$file" ] && [ "$(published id "$file")" != "$pinned" ]; then
            log "WARNING: $pcc published id $(published id "$file") but $pinned is pinned; the pin is kept." \
                "If $pcc really has a new key, confirm it with its operator, then" \
                "'comity peer remove $pcc' and 'comity peer add'"
        fi
        continue
    fi

    while [ ! -s "$file" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 1
    done
    if [ ! -s "$file" ]; then
        log "warning: no id from $pcc in $file after ${PEER_WAIT_SECS}s; not pinned yet" \
            "(restart this container once $pcc is up, or pin it with 'comity peer add')"
        continue
    fi
    pid=$(published id "$file")
    valid_id "$pid" || die "$file holds no valid node id"
    [ -n "$paddr" ] || paddr=$(published address "$file")
    valid_addr "$paddr" || die "PEERS: no usable HOST:PORT for $pcc (got '$paddr')"
    pname=$(toml_text "$(published name "$file")")

    # Append to a copy, let comityd check the result, then replace atomically.
    tmp=$(mktemp "$NODE_DIR/.comity-config-entrypoint.XXXXXX")
    cat "$CONFIG" >"$tmp"
    {
        printf '\n# Pinned by the container entrypoint from %s on %s.\n' "$file" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '[[peer]]\nid = "%s"\naddress = "%s"\nname = "%s"\ncountry = "%s"\n' \
            "$pid" "$paddr" "$pname" "$pcc"
    } >>"$tmp"
    chmod 0640 "$tmp"
    if comityd --config "$tmp" --check >/dev/null; then
        mv -f "$tmp" "$CONFIG"
        log "pinned $pcc $pid at $paddr"
    else
        rm -f "$tmp"
        die "pinning $pcc from $file would make the configuration invalid (see above)"
    fi
done

exec comityd --config "$CONFIG" "$@"
