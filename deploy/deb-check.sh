#!/bin/sh
# The Debian package, for real, on this machine: build it, lint it, install
# it with dpkg -i, check what it installed, make a node as its operator
# would, remove it, reinstall it, purge it (the keys and data must stay),
# reinstall over the kept node, purge again, then delete what this run made.
#
#   deploy/deb-check.sh        # as root, on a machine without a comity node
#   CHECK_PORT_BASE=47490      # comityd runs briefly on 127.0.0.1:47490 and :47491
#
# It installs what it needs (Debian packages through apt-get; cargo-deb
# CARGO_DEB_VERSION through cargo install --locked) and skips nothing: a
# tool it cannot install, or a machine that already has a comity package,
# user or directory (which the cleanup would delete), fails the run; CI=true
# changes nothing.
# Ends with "deb-check.sh: N passed, N failed"; exit 1 if any failed.

set -u
cd "$(dirname "$0")/.." || exit 1
CARGO_DEB_VERSION=3.8.0
# comityd's QUIC and metrics ports, on 127.0.0.1, for the short run below.
PORT_BASE=${CHECK_PORT_BASE:-47490}

passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
die() {
    printf 'FAIL  %s\n' "$*"
    echo "deb-check.sh: $passed passed, $((failed + 1)) failed"
    exit 1
}
# Runs a command, showing it and (indented) its output; returns its status.
run() {
    printf '  $ %s\n' "$*"
    "$@" >"$TMP/out" 2>&1
    rc=$?
    sed 's/^/    /' "$TMP/out"
    return $rc
}
# check DESCRIPTION COMMAND...: PASS if the command succeeds, else FAIL.
check() {
    what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
elapsed() { echo $(($(date +%s) - $1)); }
mode_owner() { stat -c '%a %U:%G' "$1" 2>/dev/null; }
is_mode() { [ "$(mode_owner "$1")" = "$2" ]; }
as_comity() { setpriv --reuid=comity --regid=comity --init-groups -- "$@"; }
status_of() { dpkg-query -W -f='${db:Status-Abbrev}' comity 2>/dev/null | tr -d ' '; }

START=$(date +%s)
[ "$(id -u)" = 0 ] || die "deb-check.sh must run as root (it installs the package with dpkg -i)"

# --- a machine without a comity node ------------------------------------------
# The cleanup deletes /var/lib/comity, /etc/comity and the comity user, so
# they must not exist before: on a real node they are its keys and history.
present=
for p in /var/lib/comity /etc/comity /run/comity; do [ -e "$p" ] && present="$present $p"; done
getent passwd comity >/dev/null && present="$present user:comity"
getent group comity >/dev/null && present="$present group:comity"
case $(status_of) in '' | un) ;; *) present="$present package:comity($(status_of))" ;; esac
[ -z "$present" ] ||
    die "this machine already has$present; deb-check.sh installs and purges the package for real and" \
        "then deletes those: run it on a scratch machine (CI), or remove them yourself first"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/comity-deb-check.XXXXXX") || exit 1
DAEMON=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
    case $(status_of) in '' | un) ;; *) dpkg --purge comity >/dev/null 2>&1 ;; esac
    rm -rf /var/lib/comity /etc/comity /run/comity
    getent passwd comity >/dev/null && userdel comity
    getent group comity >/dev/null && groupdel comity
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools --------------------------------------------------------------------
echo "== tools"
missing=
for t in systemd-analyze:systemd systemd-sysusers:systemd lintian:lintian dpkg-shlibdeps:dpkg-dev \
    gzip:gzip setpriv:util-linux shellcheck:shellcheck; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
done
if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    # shellcheck disable=SC2086 # one word per package
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
        >"$TMP/apt.log" 2>&1 || { cat "$TMP/apt.log"; die "apt-get install$missing"; }
fi
t=$(date +%s)
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "installing cargo-deb $CARGO_DEB_VERSION (found: $(cargo deb --version 2>/dev/null || echo none))"
    CARGO_TARGET_DIR=$TMP/cargo-deb-build cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked \
        >"$TMP/cargo-install.log" 2>&1 || { tail -n 30 "$TMP/cargo-install.log"; die "cargo install cargo-deb"; }
    rm -rf "$TMP/cargo-deb-build"
    echo "  cargo install cargo-deb: $(elapsed "$t") s"
fi
printf '%s; %s; %s\n' "$(cargo deb --version)" "$(lintian --version)" "$(systemd-analyze --version | head -n 1)"

# --- build --------------------------------------------------------------------
echo "== build (deploy/deb-build.sh)"
t=$(date +%s)
deploy/deb-build.sh >"$TMP/build.log" 2>&1 || { tail -n 40 "$TMP/build.log"; die "deploy/deb-build.sh"; }
DEB=$(tail -n 1 "$TMP/build.log")
[ -f "$DEB" ] || { tail -n 20 "$TMP/build.log"; die "deb-build.sh printed no .deb path (last line: $DEB)"; }
grep -E '^ *(Compiling|Finished)' "$TMP/build.log" | tail -n 1 | sed 's/^ */  /'
echo "  build and pack: $(elapsed "$t") s; $DEB, $(du -k "$DEB" | cut -f1) KiB"
pass "package built: $(basename "$DEB")"

echo "== lintian"
# Errors and warnings fail the run; info and pedantic findings are shown.
# deploy/debian/lintian-overrides names each finding accepted, and why.
if run lintian --info --display-level '>=pedantic' --fail-on error,warning "$DEB"; then
    pass "lintian: no errors or warnings ($(grep -c '^[IP]:' "$TMP/out") info or pedantic findings, listed above)"
else
    fail "lintian: errors or warnings (above)"
fi

echo "== maintainer scripts and these scripts"
if run shellcheck -s sh deploy/deb-build.sh deploy/deb-check.sh deploy/debian/postinst \
    deploy/debian/prerm deploy/debian/postrm; then
    pass "shellcheck -s sh: deb-build.sh, deb-check.sh, postinst, prerm, postrm"
else
    fail "shellcheck"
fi

# --- install ------------------------------------------------------------------
echo "== dpkg -i"
run dpkg -i "$DEB" || die "dpkg -i"
[ "$(status_of)" = ii ] || die "after dpkg -i the package is '$(status_of)', not installed (ii)"
pass "dpkg -i: installed ($(dpkg-query -W -f='${Version}' comity))"
dpkg -L comity >"$TMP/files"
grep -v '/$' "$TMP/files" | while read -r f; do [ -d "$f" ] || printf '%s\n' "$f"; done >"$TMP/package-files"
echo "  $(wc -l <"$TMP/package-files") files"

verify_clean() { [ -z "$(dpkg --verify comity 2>&1)" ]; }
check "dpkg --verify comity: every installed file matches the md5sums dpkg recorded" verify_clean
# dpkg made the md5sums at unpack time (cargo-deb ships none); a changed
# file must show.
EXAMPLE=/usr/share/comity/examples/arcadia.toml
cp -p "$EXAMPLE" "$TMP/example"
echo '# changed' >>"$EXAMPLE"
verify_sees_change() { dpkg --verify comity 2>&1 | grep -q "^..5.* $EXAMPLE\$"; }
check "dpkg --verify comity names a file changed after installation" verify_sees_change
cp -p "$TMP/example" "$EXAMPLE"
binaries_ok() { [ "$(stat -c '%a %U:%G' /usr/bin/comityd /usr/bin/comity | sort -u)" = "755 root:root" ]; }
check "binaries /usr/bin/comityd and /usr/bin/comity: 0755 root:root" binaries_ok
versions_run() { /usr/bin/comityd --version | grep -q '^comityd ' && /usr/bin/comity --version | grep -q '^comity '; }
check "comityd --version and comity --version run" versions_run
UNIT=/usr/lib/systemd/system/comityd.service
if run systemd-analyze verify "$UNIT" && ! grep -q . "$TMP/out"; then
    pass "systemd-analyze verify $UNIT (silent, exit 0)"
else
    fail "systemd-analyze verify $UNIT"
fi
systemd-analyze security --offline=true "$UNIT" 2>&1 | grep -i 'overall exposure' | sed 's/^/  security: /'
unit_is_deploys() { sed '/^Exec/s|/usr/local/bin/|/usr/bin/|g' deploy/comityd.service | cmp -s - "$UNIT"; }
check "the installed unit is deploy/comityd.service with /usr/bin/ in its Exec lines" unit_is_deploys
not_enabled() { [ "$(systemctl is-enabled comityd.service 2>/dev/null)" = disabled ]; }
check "the unit is not enabled (systemctl is-enabled: disabled)" not_enabled
system_user() {
    IFS=: read -r _ _ uid _ _ home shell <<EOF_PASSWD
$(getent passwd comity)
EOF_PASSWD
    echo "  $(getent passwd comity)"
    [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/comity ] &&
        case $shell in */nologin | */false) true ;; *) false ;; esac
}
check "user comity: a system account (uid < 1000), home /var/lib/comity, no login shell" system_user
directories() {
    [ "$(mode_owner /var/lib/comity)" = "700 comity:comity" ] &&
        [ "$(mode_owner /etc/comity)" = "770 root:comity" ] &&
        [ "$(mode_owner /run/comity)" = "750 comity:comity" ]
}
check "/var/lib/comity 0700 comity:comity, /etc/comity 0770 root:comity, /run/comity 0750 comity:comity" directories
man_pages() {
    zcat /usr/share/man/man1/comity.1.gz | grep -q '^.TH comity 1' &&
        zcat /usr/share/man/man1/comity-peer-add.1.gz | grep -q '^.TH comity-peer-add 1' &&
        zcat /usr/share/man/man8/comityd.8.gz | grep -q '^.TH comityd 8'
}
check "man pages comity(1), comity-peer-add(1), comityd(8), gzipped roff" man_pages
# clap's bash completion, called as bash calls it for `comity pe<TAB>`.
bash_completion() {
    # shellcheck disable=SC2016 # expanded by bash, not here
    bash -c '. /usr/share/bash-completion/completions/comity &&
        COMP_WORDS=(comity pe) && COMP_CWORD=1 && COMP_LINE="comity pe" && COMP_POINT=9 &&
        _comity comity pe comity && [ "${COMPREPLY[*]}" = peer ]'
}
check "bash completion loads and completes 'comity pe' to 'peer'" bash_completion
check "zsh and fish completions for comity and comityd" \
    test -s /usr/share/zsh/vendor-completions/_comity -a -s /usr/share/zsh/vendor-completions/_comityd \
    -a -s /usr/share/fish/vendor_completions.d/comity.fish -a -s /usr/share/fish/vendor_completions.d/comityd.fish
check "example configurations in /usr/share/comity" \
    test -s /usr/share/comity/examples/arcadia.toml -a -s /usr/share/comity/comity.example.toml

# --- the operator's first steps (docs/operations.md) ---------------------------
echo "== a node, as the operator makes it"
run as_comity comity init --dir /var/lib/comity --name "Ministry of Justice of Arcadia" --country AR \
    --listen 0.0.0.0:7400 || fail "comity init as comity"
install -o root -g comity -m 0640 /usr/share/comity/examples/arcadia.toml /etc/comity/comity.toml
rm -f /var/lib/comity/comity.toml
KEY=/var/lib/comity/keys/node.key
node_private() {
    [ "$(mode_owner "$KEY")" = "600 comity:comity" ] && [ "$(mode_owner /var/lib/comity/data)" = "700 comity:comity" ]
}
check "key file $KEY 0600 comity:comity, data directory 0700" node_private
NODE_ID=$(as_comity comity --config /etc/comity/comity.toml id 2>/dev/null)
if run as_comity comityd --config /etc/comity/comity.toml --check &&
    grep -q "^configuration and keys are valid; node id $NODE_ID\$" "$TMP/out"; then
    pass "comityd --check as comity: valid, node id $NODE_ID"
else
    fail "comityd --check as comity (node id '$NODE_ID')"
fi
chmod 0644 "$KEY"
if ! run as_comity comityd --config /etc/comity/comity.toml --check && grep -q 'chmod 600' "$TMP/out"; then
    pass "comityd --check refuses the key file at 0644 and says chmod 600"
else
    fail "comityd --check with the key file at 0644"
fi
chmod 0600 "$KEY"

# Without systemd as PID 1 the unit cannot be started here; the same
# command line runs as the unit would run it (user comity, umask 0077), on
# loopback (comityd refuses port 0: peers and Prometheus need a fixed one).
(
    umask 077
    exec setpriv --reuid=comity --regid=comity --init-groups -- \
        env COMITY_LISTEN="127.0.0.1:$PORT_BASE" COMITY_METRICS_LISTEN="127.0.0.1:$((PORT_BASE + 1))" \
        /usr/bin/comityd --config /etc/comity/comity.toml
) >"$TMP/comityd.log" 2>&1 &
DAEMON=$!
n=30
until as_comity comity --config /etc/comity/comity.toml peer list --json >/dev/null 2>&1 || [ $n = 0 ]; do
    sleep 1
    n=$((n - 1))
done
socket_private() { [ "$(mode_owner /run/comity/comity.sock)" = "600 comity:comity" ]; }
check "comityd serves its admin socket /run/comity/comity.sock (0600 comity)" socket_private
kill -TERM "$DAEMON"
if wait "$DAEMON"; then pass "comityd as comity: SIGTERM, exit 0"; else fail "comityd exit status $?"; sed 's/^/    /' "$TMP/comityd.log"; fi
DAEMON=
KEY_SUM=$(sha256sum "$KEY")
CONF_SUM=$(sha256sum /etc/comity/comity.toml)
# What `systemctl enable comityd` leaves; a purge must take it away.
run systemctl enable comityd.service
WANTS=/etc/systemd/system/multi-user.target.wants/comityd.service
check "systemctl enable comityd (offline) links $WANTS" test -L "$WANTS"

# The node's files, untouched: what no removal may delete.
node_kept() {
    [ "$(sha256sum "$KEY")" = "$KEY_SUM" ] && [ "$(mode_owner "$KEY")" = "600 comity:comity" ] &&
        [ "$(mode_owner /var/lib/comity)" = "700 comity:comity" ] && [ -d /var/lib/comity/data/store ] &&
        [ "$(sha256sum /etc/comity/comity.toml)" = "$CONF_SUM" ] && getent passwd comity >/dev/null
}
package_files_gone() {
    left=$(while read -r f; do [ -e "$f" ] && printf '%s ' "$f"; done <"$TMP/package-files")
    [ -z "$left" ] || { echo "  still there: $left"; return 1; }
}
same_node_checks() {
    run as_comity comityd --config /etc/comity/comity.toml --check &&
        grep -q "node id $NODE_ID\$" "$TMP/out"
}

not_installed() { case $(status_of) in '' | un) true ;; *) false ;; esac; }
config_files_only() { [ "$(status_of)" = rc ]; }
removed() { "$1" && package_files_gone; }
no_unit_state() {
    [ ! -e "$WANTS" ] && [ ! -L "$WANTS" ] && [ ! -L /etc/systemd/system/comityd.service ] &&
        ! ls /var/lib/systemd/deb-systemd-helper-*/*comityd* >/dev/null 2>&1
}
enabled_again() { [ -L "$WANTS" ] && [ ! -L /etc/systemd/system/comityd.service ]; }

# --- remove, reinstall ----------------------------------------------------------
echo "== dpkg -r (remove, not purge)"
run dpkg -r comity || fail "dpkg -r"
check "after dpkg -r: package state rc (config-files), its files gone" removed config_files_only
check "after dpkg -r: key (same sha256, 0600 comity), data, /etc/comity/comity.toml and user kept" node_kept
echo "== dpkg -i again"
run dpkg -i "$DEB" || die "dpkg -i after dpkg -r"
check "reinstalled: the operator's enable link is back, the unit not masked" enabled_again
check "reinstalled: comityd --check finds the same node ($NODE_ID)" same_node_checks

# --- purge ----------------------------------------------------------------------
echo "== dpkg --purge"
run dpkg --purge comity || fail "dpkg --purge"
check "after purge: package not installed, its files gone" removed not_installed
check "after purge: no unit links or packaging state left (enable link, mask, deb-systemd-helper)" no_unit_state
if node_kept; then
    pass "after purge: $KEY (same sha256, 0600 comity:comity), /var/lib/comity 0700 with its store, /etc/comity/comity.toml and the comity user kept"
else
    fail "after purge: the node's files or user were changed or deleted"
    find /var/lib/comity /etc/comity -exec stat -c '    %A %U:%G %n' {} + 2>&1
fi

echo "== dpkg -i over the kept node, purge again"
run dpkg -i "$DEB" || die "dpkg -i after purge"
check "installed over the kept node: comityd --check finds the same node ($NODE_ID)" same_node_checks
check "installed over the kept node: /var/lib/comity 0700 comity:comity, key 0600" node_private
run dpkg --purge comity || fail "dpkg --purge (second)"
second_purge() { not_installed && node_kept; }
check "second purge: package gone, node kept" second_purge

echo "deb-check.sh: $(elapsed "$START") s in all"
echo "deb-check.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
