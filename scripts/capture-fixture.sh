#!/bin/sh
# Regenerates test/fixtures/guest.pcap: real frames from a Linux 6.1 guest
# (DHCP DISCOVER, ARP, ICMP echo, a UDP DNS query, TCP SYNs with Linux's
# options, IPv6 MLD/ND). The wire and classify tests pin their expectations to
# what a real kernel sends, so this capture is the ground truth they check.
#
# Needs the testbed guest: /work/shared/testbed/build-guest.sh /tmp/tbcache
# Usage: scripts/capture-fixture.sh [CACHE_DIR] [OUT_PCAP]
set -eu
T=${TESTBED:-/work/shared/testbed}
CACHE=${1:-/tmp/tbcache}
OUT=${2:-$(dirname "$0")/../test/fixtures/guest.pcap}
SOCK=$(mktemp -u /tmp/vnetkit-fx.XXXXXX.sock)
TMP=$(mktemp /tmp/vnetkit-fx.XXXXXX.pcap)

# The frame dumper answers ARP and ping for 192.168.65.1, which is enough to
# get a real echo exchange; nothing answers DHCP, UDP or TCP, so the guest's
# first frames of each are what gets captured (DHCP falls back to a static
# address).
node "$T/framedump.js" --unix "$SOCK" --respond --quiet --timeout 60 &
DUMP=$!
trap 'kill $DUMP 2>/dev/null || true; rm -f "$SOCK" "$TMP"' EXIT
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -S "$SOCK" ] && break; sleep 0.2; done

"$T/run-guest.sh" --socket "$SOCK" --pcap "$TMP" --timeout 60 --cmd '
tb_dhcp eth0 1 || true
tb_static 192.168.65.3/24 192.168.65.1
tb_ping 192.168.65.1 2
timeout 2 nslookup vnetkit.test 192.168.65.1 >/dev/null 2>&1 || true
timeout 2 nc 192.168.65.1 8080 </dev/null || true
tb fixture done
' "$CACHE"

cp "$TMP" "$OUT"
echo "wrote $OUT ($(wc -c <"$OUT") bytes)"
