#!/usr/bin/env bash
# Provision CPython 3.14 from Debian sid for Pyreach's tests, without touching the system's apt configuration.
#
# Result (cached; a second run only checks a marker):
#   ${PYREACH_CACHE_DIR:-$HOME/.cache/pyreach}/cpython-3.14/root          a root tree usable for chroot
#       (lib -> usr/lib, lib64 -> usr/lib64, bin -> usr/bin, /proc, /tmp), so a container-style target runs as
#       unshare --pid --mount --fork --mount-proc=<root>/proc chroot <root> /usr/bin/python3.14 app.py
#   <root>/usr/bin/python3.14-host   a copy of the interpreter patched (patchelf) to use <root>'s loader and
#       libraries, so it runs directly on the host (host-style targets).
# The absolute path of that directly runnable interpreter is printed as the last line of stdout.
# Also makes sure the unprivileged system user `pyreach-test` exists (when run as root), for tests that
# start targets under another uid.
set -euo pipefail

CACHE_BASE="${PYREACH_CACHE_DIR:-$HOME/.cache/pyreach}"
DIR="$CACHE_BASE/cpython-3.14"
ROOT="$DIR/root"
HOST_PY="$ROOT/usr/bin/python3.14-host"
MARKER="$DIR/.complete-v1"
TEST_USER="pyreach-test"

log() { echo "provision-python: $*" >&2; }
die() { echo "provision-python: error: $*" >&2; exit 1; }

ensure_user() {
  if [ "$(id -u)" = 0 ] && ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$TEST_USER" 2>/dev/null \
      || id "$TEST_USER" >/dev/null 2>&1 \
      || log "warning: could not create user $TEST_USER (tests that need it will say so)"
  fi
}

# Fast path: everything already in place.
if [ -f "$MARKER" ] && [ -x "$HOST_PY" ]; then
  ensure_user
  echo "$HOST_PY"
  exit 0
fi

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
# Another run may have finished while we waited for the lock.
if [ -f "$MARKER" ] && [ -x "$HOST_PY" ]; then
  ensure_user
  echo "$HOST_PY"
  exit 0
fi

ensure_user
command -v apt-get >/dev/null || die "apt-get not found; this script needs a Debian-based host"
command -v dpkg >/dev/null || die "dpkg not found"
if ! command -v patchelf >/dev/null; then
  [ "$(id -u)" = 0 ] || die "patchelf is missing; install it (apt-get install -y patchelf) or run as root"
  log "installing patchelf"
  apt-get install -y patchelf >&2 || die "could not install patchelf"
fi

# Debian archive URIs already configured on this machine (never a hard-coded host name); security
# archives do not carry sid.
URIS=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  while IFS= read -r line; do
    case "$line" in
      URIs:*) for u in ${line#URIs:}; do
                case "$u" in *security*) ;; *) URIS="$URIS $u" ;; esac
              done ;;
    esac
  done <"$f"
done
if [ -z "$URIS" ] && [ -f /etc/apt/sources.list ]; then
  URIS="$(awk '$1=="deb" && $2 !~ /security/ {print $2}' /etc/apt/sources.list | sort -u | tr '\n' ' ')"
fi
URIS="$(echo $URIS | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')"
[ -n "${URIS// /}" ] || die "no Debian archive URI found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || die "$KEYRING missing (install debian-archive-keyring)"

APT="$DIR/apt"
rm -rf "$APT"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/debs"
: >"$APT/sources.list"
for u in $URIS; do
  echo "deb [signed-by=$KEYRING] $u sid main" >>"$APT/sources.list"
done
APT_OPTS=(
  -o "Dir::State::Lists=$APT/lists"
  -o "Dir::Etc::SourceList=$APT/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Cache::Archives=$APT/archives"
  -o "Dir::Cache::pkgcache=$APT/pkgcache.bin"
  -o "Dir::Cache::srcpkgcache=$APT/srcpkgcache.bin"
  -o "APT::Sandbox::User=root"
)
log "fetching sid package lists from:$URIS"
apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update for sid failed (is the Debian archive reachable?)"

PKGS=(python3.14-minimal libpython3.14-minimal libpython3.14-stdlib
  libc6 libexpat1 zlib1g libssl3t64 libffi8 libzstd1 liblzma5 libbz2-1.0 libsqlite3-0 libuuid1
  libncursesw6 libtinfo6 libreadline8t64 libgcc-s1)
log "downloading ${#PKGS[@]} packages"
(cd "$APT/debs" && apt-get "${APT_OPTS[@]}" download "${PKGS[@]}" >&2) || die "apt-get download failed"

TMPROOT="$DIR/root.tmp.$$"
rm -rf "$TMPROOT"
mkdir -p "$TMPROOT"
for deb in "$APT/debs"/*.deb; do
  dpkg -x "$deb" "$TMPROOT" || die "dpkg -x $deb failed"
done
# Container-style layout: merged-/usr symlinks plus the mount points a chroot target needs.
for d in lib lib64 bin sbin; do
  if [ -d "$TMPROOT/usr/$d" ] && [ ! -e "$TMPROOT/$d" ]; then ln -s "usr/$d" "$TMPROOT/$d"; fi
done
mkdir -p "$TMPROOT/usr/lib64" "$TMPROOT/proc" "$TMPROOT/tmp" "$TMPROOT/dev" "$TMPROOT/etc"
[ -e "$TMPROOT/lib64" ] || ln -s usr/lib64 "$TMPROOT/lib64"
chmod 1777 "$TMPROOT/tmp"
[ -e "$TMPROOT/usr/lib64/ld-linux-x86-64.so.2" ] || ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$TMPROOT/usr/lib64/ld-linux-x86-64.so.2"
printf 'root:x:0:0:root:/root:/bin/sh\npyreach-test:x:%s:%s::/nonexistent:/usr/sbin/nologin\n' \
  "$(id -u "$TEST_USER" 2>/dev/null || echo 999)" "$(id -g "$TEST_USER" 2>/dev/null || echo 999)" >"$TMPROOT/etc/passwd"
[ -x "$TMPROOT/usr/bin/python3.14" ] || die "python3.14 missing after extraction"

rm -rf "$ROOT"
mv "$TMPROOT" "$ROOT"

# Host-style: a patched copy that runs directly on this host with the sid loader and libraries. DT_RPATH
# (not RUNPATH) so extension modules' own dependencies (libffi for _ctypes...) resolve from <root> too.
LIBDIR="$ROOT/usr/lib/x86_64-linux-gnu"
cp "$ROOT/usr/bin/python3.14" "$HOST_PY.tmp"
patchelf --set-interpreter "$LIBDIR/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$LIBDIR" "$HOST_PY.tmp" \
  || die "patchelf failed"
mv "$HOST_PY.tmp" "$HOST_PY"
chmod 0755 "$HOST_PY"
# World-readable tree: targets run as other users too.
chmod -R a+rX "$ROOT"
chmod 0755 "$DIR"

out="$("$HOST_PY" -c 'import sys, ctypes, json; print(sys.version_info[:2])')" || die "patched interpreter does not run"
[ "$out" = "(3, 14)" ] || die "unexpected interpreter version: $out"
ensure_user
rm -rf "$APT/lists" "$APT/archives"
touch "$MARKER"
log "ready: $("$HOST_PY" -c 'import sys; print(sys.version.split()[0])')"
echo "$HOST_PY"
