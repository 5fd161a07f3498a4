#!/usr/bin/env bash
# install-deps.sh: host packages the e2e tests need (Debian/Ubuntu).
#   qemu-system-x86  boots the test guest (TCG; KVM is not required)
#   busybox-static   the guest's userland (copied into its initrd)
#   tshark           reads the daemon e2e test's pcap capture
#   iputils-ping     the system ping the ICMP proxy runs (its test pings 127.0.0.1; slim
#                    images ship without it)
# netcat-openbsd and the kernel are NOT installed: build-guest.sh fetches their .debs with
# `apt-get download` and only extracts them into the cache.
#
# As root: one `apt-get update`, then `apt-get install --no-install-recommends` of what is
# missing. Not root and something missing: a loud message and exit 1, because the e2e tests
# would fail later with a less obvious error.
set -euo pipefail

PKGS=(qemu-system-x86 busybox-static tshark)
# tools the scripts and the harness call; each belongs to a package that is normally
# present, listed so a minimal image reports them too
declare -A CMD_PKG=([flock]=util-linux [dpkg-deb]=dpkg [apt-get]=apt [gzip]=gzip [ping]=iputils-ping)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "install-deps: ERROR: this is not a Debian-like system (no dpkg/apt); install ${PKGS[*]} by hand" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
for c in "${!CMD_PKG[@]}"; do
  command -v "$c" >/dev/null || missing+=("${CMD_PKG[$c]}")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present (${PKGS[*]})" >&2
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  {
    echo "##################################################################"
    echo "install-deps: MISSING host packages: ${missing[*]}"
    echo "install-deps: the qemu guest e2e tests cannot run without them."
    echo "install-deps: run as root:  scripts/testbed/install-deps.sh"
    echo "install-deps:          or:  sudo apt-get install --no-install-recommends ${missing[*]}"
    echo "##################################################################"
  } >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
for p in "${PKGS[@]}"; do
  installed "$p" || { echo "install-deps: ERROR: $p still not installed" >&2; exit 1; }
done
echo "install-deps: done" >&2
