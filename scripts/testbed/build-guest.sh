#!/usr/bin/env bash
# build-guest.sh [CACHE_DIR]   (default: <repo>/.testbed-cache)
#
# Builds the boot files of the e2e test guest:
#   CACHE_DIR/vmlinuz          Debian cloud kernel (from the .deb, never installed on the host)
#   CACHE_DIR/initrd.cpio.gz   busybox-static, the virtio-net modules, netcat-openbsd
#                              (busybox nc has no UDP mode) and scripts/testbed/guest/*
#   CACHE_DIR/build.env        what was built, read by test/e2e/harness.ts
# Idempotent and safe to run concurrently (flock on CACHE_DIR/.lock): when nothing that
# goes into the image changed it only compares a stamp and exits (~10 ms), without apt.
#
# Host needs: busybox-static, dpkg-deb, apt-get, gzip, flock (scripts/testbed/install-deps.sh).
# Knobs (part of the stamp, so changing one rebuilds):
#   TB_KERNEL_FLAVOUR  cloud-amd64 (default: virtio as uncompressed modules, LZ4 vmlinuz that
#                      boots fast under TCG) | amd64
#   TB_WITH_IPERF3     0 (default) | 1  also ship iperf3 and its libraries
#   TB_EXTRA_MODULES   more kernel modules to load at boot (dependencies are resolved)
#   TB_KEEP_EXTRACT    1 = keep the extracted kernel tree and the staging rootfs for inspection
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${1:-$REPO/.testbed-cache}
FLAVOUR=${TB_KERNEL_FLAVOUR:-cloud-amd64}
WITH_IPERF3=${TB_WITH_IPERF3:-0}
EXTRA_MODULES=${TB_EXTRA_MODULES:-}
MODULES="virtio_pci virtio_net $EXTRA_MODULES"

say() { echo "[build-guest] $*" >&2; }
die() {
  {
    echo "[build-guest] ======================================================"
    echo "[build-guest] ERROR: $*"
    echo "[build-guest] ======================================================"
  } >&2
  exit 1
}

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
command -v flock >/dev/null || die "flock missing (util-linux)"
exec 9>"$CACHE/.lock"
flock 9

BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: run scripts/testbed/install-deps.sh (package busybox-static)"
# a dynamically linked busybox would need its libc in the image; busybox-static prints no
# "dynamically linked" and ldd says "not a dynamic executable"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked: install busybox-static (scripts/testbed/install-deps.sh)"
fi
for t in dpkg-deb apt-get apt-cache gzip md5sum ldd; do
  command -v "$t" >/dev/null || die "$t missing on the host"
done

TOOL_PKGS="netcat-openbsd libbsd0 libmd0"
[ "$WITH_IPERF3" = 1 ] && TOOL_PKGS="$TOOL_PKGS iperf3 libiperf0 libsctp1 libssl3"

# ---- stamp: everything that changes the image. The kernel package name is cached, so an
# up-to-date check never talks to apt.
KPKG_FILE=$CACHE/kernel.pkg
kpkg_cached() { [ -s "$KPKG_FILE" ] && [ "$(cut -d' ' -f1 "$KPKG_FILE")" = "$FLAVOUR" ]; }
stamp() {
  {
    echo "flavour=$FLAVOUR kpkg=$(cut -d' ' -f2 "$KPKG_FILE" 2>/dev/null) tools=$TOOL_PKGS modules=$MODULES"
    dpkg-query -W -f='${Version}\n' busybox-static 2>/dev/null || md5sum "$BUSYBOX"
    cat "$HERE/build-guest.sh" "$HERE"/guest/*
  } | md5sum | cut -d' ' -f1
}
if kpkg_cached && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.cpio.gz" ] && [ -f "$CACHE/build.env" ] \
   && [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$(stamp)" ]; then
  say "up to date: $CACHE"
  echo "$CACHE/build.env"
  exit 0
fi

T0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }

# ---- apt metadata: `apt-get download` needs package lists; only root can refresh them
UPDATED=0
apt_refresh() {
  [ "$UPDATED" = 0 ] || return 0
  [ "$(id -u)" = 0 ] || die "apt package lists are missing or stale and only root can run apt-get update (run scripts/testbed/install-deps.sh as root)"
  say "apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  UPDATED=1
}

if ! kpkg_cached; then
  apt-cache show "linux-image-$FLAVOUR" >/dev/null 2>&1 || apt_refresh
  # the meta package depends on today's versioned image (linux-image-6.1.0-NN-cloud-amd64);
  # the name is pinned in the cache because old ABIs vanish from the archive
  kpkg=$(apt-cache depends "linux-image-$FLAVOUR" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$kpkg" ] || die "cannot resolve linux-image-$FLAVOUR to a versioned kernel package"
  echo "$FLAVOUR $kpkg" > "$KPKG_FILE"
fi
KPKG=$(cut -d' ' -f2 "$KPKG_FILE")

DEBS=$CACHE/debs
mkdir -p "$DEBS"
# apt drops privileges to _apt for downloads; it must be able to write here
chmod 0777 "$DEBS" 2>/dev/null || true
have_deb() { compgen -G "$DEBS/${1}_*.deb" >/dev/null; }
deb_path() { compgen -G "$DEBS/${1}_*.deb" | head -1; }
download() {
  local p want=()
  for p in "$@"; do have_deb "$p" || want+=("$p"); done
  [ ${#want[@]} -gt 0 ] || return 0
  say "apt-get download ${want[*]}"
  if ! (cd "$DEBS" && apt-get download -qq "${want[@]}" >/dev/null 2>&1); then
    apt_refresh
    (cd "$DEBS" && apt-get download -qq "${want[@]}" >&2) || return 1
  fi
}
if ! download "$KPKG"; then
  # the pinned ABI left the archive: resolve the meta package again
  rm -f "$KPKG_FILE"
  apt_refresh
  kpkg=$(apt-cache depends "linux-image-$FLAVOUR" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$kpkg" ] || die "cannot resolve linux-image-$FLAVOUR"
  echo "$FLAVOUR $kpkg" > "$KPKG_FILE"
  KPKG=$kpkg
  download "$KPKG" || die "apt-get download $KPKG failed"
fi
# shellcheck disable=SC2086
download $TOOL_PKGS || die "apt-get download $TOOL_PKGS failed"

# ---- extract
X=$CACHE/extract
rm -rf "$X"
mkdir -p "$X/kernel" "$X/tools"
dpkg-deb -x "$(deb_path "$KPKG")" "$X/kernel"
for p in $TOOL_PKGS; do dpkg-deb -x "$(deb_path "$p")" "$X/tools"; done
KVER=$(ls "$X/kernel/lib/modules" | head -1)
[ -n "$KVER" ] && [ -f "$X/kernel/boot/vmlinuz-$KVER" ] || die "no vmlinuz in $(deb_path "$KPKG")"
MODDIR=$X/kernel/lib/modules/$KVER

# ---- staging rootfs
R=$X/rootfs
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,testbed,lib64,lib/x86_64-linux-gnu,lib/modules/"$KVER"}
cp "$BUSYBOX" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
install -m 0755 "$HERE/guest/init" "$R/init"
install -m 0644 "$HERE/guest/lib.sh" "$R/testbed/lib.sh"
install -m 0644 "$HERE/guest/default.sh" "$R/testbed/default.sh"
install -m 0755 "$HERE/guest/udhcpc.script" "$R/testbed/udhcpc.script"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
printf '127.0.0.1 localhost\n' > "$R/etc/hosts"
: > "$R/etc/resolv.conf"
# the kernel opens /dev/console for PID 1 before /init runs, so the node belongs in the
# archive; mknod needs root. Without it /init reopens the console from devtmpfs, and only
# kernel output before that point is lost.
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || say "not root: no /dev/console node in the image (init reopens it from devtmpfs)"

# modules: depends= in each .ko's modinfo section names its dependencies; order them
# dependency-first so /init can insmod them in sequence
declare -A KO=() DONE=()
while IFS= read -r f; do
  n=${f##*/}; n=${n%.ko}; n=${n//-/_}
  KO[$n]=${f#"$MODDIR"/}
done < <(find "$MODDIR/kernel" -name '*.ko')
ORDER=()
need_mod() {
  local n=${1//-/_} rel deps d
  [ -z "${DONE[$n]:-}" ] || return 0
  DONE[$n]=1
  rel=${KO[$n]:-}
  if [ -z "$rel" ]; then
    sed 's#.*/##; s#\.ko$##; s#-#_#g' "$MODDIR/modules.builtin" | grep -qx "$n" && return 0
    die "module $n is neither built in nor an uncompressed .ko in $KPKG"
  fi
  deps=$(grep -a -o 'depends=[^[:cntrl:]]*' "$MODDIR/$rel" | head -1 | cut -d= -f2)
  for d in ${deps//,/ }; do need_mod "$d"; done
  ORDER+=("$rel")
}
for m in $MODULES; do need_mod "$m"; done
: > "$R/lib/modules/load.order"
for rel in "${ORDER[@]}"; do
  mkdir -p "$R/lib/modules/$KVER/${rel%/*}"
  cp "$MODDIR/$rel" "$R/lib/modules/$KVER/$rel"
  echo "$rel" >> "$R/lib/modules/load.order"
done

# dynamic tools: the binary plus every library ldd resolves (from the extracted debs
# first, then the host, which is the same Debian release)
LIBPATH=$X/tools/usr/lib/x86_64-linux-gnu:$X/tools/lib/x86_64-linux-gnu
ship_dynamic() {
  local bin=$1 dest=$2 lib
  [ -x "$bin" ] || die "$bin missing after extracting $TOOL_PKGS"
  install -m 0755 "$bin" "$R$dest"
  LD_LIBRARY_PATH=$LIBPATH ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/lib64\// {print $1}' |
    while read -r lib; do
      case "$lib" in
        /lib64/*) cp -L "$lib" "$R/lib64/" ;;
        *) cp -L "$lib" "$R/lib/x86_64-linux-gnu/" ;;
      esac
    done
  [ -e "$R/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
}
ship_dynamic "$X/tools/bin/nc.openbsd" /usr/bin/nc.openbsd
[ "$WITH_IPERF3" != 1 ] || ship_dynamic "$X/tools/usr/bin/iperf3" /usr/bin/iperf3

# ---- archive: sorted names and -n gzip keep the output stable for equal inputs
(cd "$R" && find . -mindepth 1 | sed 's#^\./##' | LC_ALL=C sort |
  "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null | gzip -6 -n) > "$CACHE/initrd.cpio.gz.tmp"
cp -f "$X/kernel/boot/vmlinuz-$KVER" "$CACHE/vmlinuz.tmp"
mv -f "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
mv -f "$CACHE/initrd.cpio.gz.tmp" "$CACHE/initrd.cpio.gz"
cat > "$CACHE/build.env.tmp" <<ENV
TB_KERNEL=$CACHE/vmlinuz
TB_INITRD=$CACHE/initrd.cpio.gz
TB_KERNEL_PKG=$KPKG
TB_KERNEL_VERSION=$KVER
TB_MODULES=$(sed 's#.*/##; s#\.ko$##' "$R/lib/modules/load.order" | tr '\n' ' ' | sed 's/ $//')
TB_WITH_IPERF3=$WITH_IPERF3
ENV
mv -f "$CACHE/build.env.tmp" "$CACHE/build.env"
stamp > "$CACHE/stamp"
# the extracted kernel package is ~100 MB; it is re-made from the cached .deb in ~2 s
[ "${TB_KEEP_EXTRACT:-0}" = 1 ] || rm -rf "$X"
say "built in $(ms) ms: kernel $KVER, initrd $(stat -c %s "$CACHE/initrd.cpio.gz") bytes, modules: $(grep TB_MODULES "$CACHE/build.env" | cut -d= -f2)"
echo "$CACHE/build.env"
