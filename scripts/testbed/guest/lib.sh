# Helpers sourced by every guest script. Each check prints exactly one line
#   TESTBED: <what> ok|fail [positional...] key=value...
# and returns non-zero on failure, so scripts can write `tb_dhcp || exit 1`.
# Values never contain spaces (lists are joined with commas) so the harness can
# split fields on whitespace.

tb() { echo "TESTBED: $*"; }
tb_uptime() { cut -d' ' -f1 /proc/uptime; }
# centiseconds since boot: busybox date has no sub-second format
tb_cs() { tb_uptime | sed 's/\.//; s/^0*//; s/^$/0/'; }
tb_commas() { echo "$*" | tr -s ' \t\n' ',' | sed 's/^,//; s/,$//'; }
tb_oneline() { tr '\n\t' '| ' | tr -s ' ' | sed 's/ /_/g'; }

# tb_dhcp [iface] [tries]
#   TESTBED: dhcp ok <ip> prefix= router= dns= mtu= domain= search= lease= serverid= ms=
# Requests mtu (26) and search (119) on top of udhcpc's defaults
# (subnet, router, dns, hostname, domain, broadcast).
tb_dhcp() {
  local ifc=${1:-eth0} tries=${2:-5} t0
  t0=$(tb_cs)
  rm -f /run/lease.env
  if udhcpc -i "$ifc" -f -q -n -t "$tries" -T 1 -A 1 -O mtu -O search \
       -s /testbed/udhcpc.script >/tmp/udhcpc.log 2>&1 && [ -f /run/lease.env ]; then
    . /run/lease.env
    tb dhcp ok "$TB_IP" prefix="$TB_PREFIX" router="${TB_ROUTER:-none}" \
      routers="$(tb_commas "$TB_ROUTERS")" dns="$(tb_commas "${TB_DNS_ALL:-none}")" \
      mtu="${TB_MTU:-none}" domain="${TB_DOMAIN:-none}" search="$(tb_commas "${TB_SEARCH:-none}")" \
      lease="${TB_LEASE:-none}" serverid="${TB_SERVERID:-none}" ms=$(( ($(tb_cs) - t0) * 10 ))
    return 0
  fi
  tb dhcp fail "$ifc" log="$(tb_oneline </tmp/udhcpc.log)"
  return 1
}

# tb_static <ip/prefix> [router] [iface]
tb_static() {
  local ifc=${3:-eth0}
  ip addr add "$1" dev "$ifc" || { tb static fail "$1"; return 1; }
  [ -z "$2" ] || ip route add default via "$2" dev "$ifc" || { tb static fail "$1" err=route; return 1; }
  TB_IP=${1%/*} TB_PREFIX=${1#*/} TB_ROUTER=$2
  tb static ok "$TB_IP" prefix="$TB_PREFIX" router="${TB_ROUTER:-none}"
}

# tb_link [iface]  -> TESTBED: link ok eth0 mtu= flags=UP,LOWER_UP,... addr=<ip/prefix>
# reads what the kernel actually applied, not what DHCP offered
tb_link() {
  local ifc=${1:-eth0} line mtu flags addr
  line=$(ip -o link show dev "$ifc" 2>/dev/null) || { tb link fail "$ifc" err=no-such-iface; return 1; }
  mtu=$(echo "$line" | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
  flags=$(echo "$line" | sed -n 's/^[0-9]*: [^:]*: <\([^>]*\)>.*/\1/p')
  addr=$(ip -o -4 addr show dev "$ifc" | awk '{print $4; exit}')
  tb link ok "$ifc" mtu="$mtu" flags="${flags:-none}" addr="${addr:-none}"
}

# tb_ping <host> [count] [interval] [payload_bytes]
#   -> TESTBED: ping ok <host> sent= recv= size= rtt_avg_ms=
# ok means at least one reply; callers assert recv against sent themselves
tb_ping() {
  local host=$1 count=${2:-3} ival=${3:-1} size=${4:-56} out sent recv avg
  out=$(ping -c "$count" -i "$ival" -s "$size" -W 2 "$host" 2>&1)
  sent=$(echo "$out" | sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p')
  recv=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
  avg=$(echo "$out" | sed -n 's#^round-trip min/avg/max = [0-9.]*/\([0-9.]*\)/.*#\1#p')
  if [ "${recv:-0}" -gt 0 ]; then
    tb ping ok "$host" sent="${sent:-0}" recv="$recv" size="$size" rtt_avg_ms="${avg:-none}"
  else
    tb ping fail "$host" sent="${sent:-0}" recv=0 size="$size" err="$(echo "$out" | tail -1 | tb_oneline)"
    return 1
  fi
}

# tb_ping_until <host> <tries>  one echo per try until the first reply; for peers
# that may still be booting. -> TESTBED: reach ok <host> tries=
tb_ping_until() {
  local host=$1 max=${2:-20} i=0
  while [ $i -lt "$max" ]; do
    i=$((i + 1))
    if ping -c 1 -W 1 "$host" >/dev/null 2>&1; then tb reach ok "$host" tries=$i; return 0; fi
  done
  tb reach fail "$host" tries=$i
  return 1
}

# tb_dns <name> [server]  -> TESTBED: dns ok <name> addr=<first> addrs=<all,comma> server=
# busybox nslookup prints the server block first, then Name:/Address: pairs per answer
tb_dns() {
  local name=$1 server=$2 out addrs first
  out=$(nslookup "$name" $server 2>&1)
  addrs=$(echo "$out" | awk '/^Name:/{n=1; next} n && /^Address/{sub(/^Address( [0-9]+)?:[ \t]*/, ""); print}')
  first=$(echo "$addrs" | head -1)
  if [ -n "$first" ]; then
    tb dns ok "$name" addr="$first" addrs="$(tb_commas "$addrs")" server="${server:-default}"
  else
    tb dns fail "$name" server="${server:-default}" err="$(echo "$out" | grep -E "can't|NXDOMAIN|timed out|SERVFAIL|REFUSED" | head -1 | tb_oneline)"
    return 1
  fi
}

# tb_udp <host> <port> <payload> [secs]  one datagram out, print the first reply.
# busybox nc has no UDP mode, so this uses the netcat-openbsd copied into the image.
#   -> TESTBED: udp ok <host>:<port> reply=<payload with spaces as _> bytes=
tb_udp() {
  local host=$1 port=$2 payload=$3 secs=${4:-3} reply
  reply=$(printf '%s' "$payload" | timeout $((secs + 2)) nc.openbsd -u -n -W 1 -w "$secs" "$host" "$port" 2>/tmp/udp.err)
  if [ -n "$reply" ]; then
    tb udp ok "$host:$port" reply="$(printf '%s' "$reply" | tb_oneline)" bytes=${#reply}
  else
    tb udp fail "$host:$port" err="$(tb_oneline </tmp/udp.err)${reply:-no-reply}"
    return 1
  fi
}
