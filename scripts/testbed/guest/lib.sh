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

# ---- TCP helpers (busybox wget/nc). Times are in ms at the 10 ms resolution of tb_cs.

# tb_fetch_md5 <url>  HTTP GET streamed into md5sum, so the size is not bounded by
# guest RAM. No byte count: a tee or dd in the pipe makes it ~5x slower under TCG
# (small busybox buffers, a syscall per 4 KiB), and equal hashes mean equal lengths.
#   -> TESTBED: fetch ok <url> md5= ms=
tb_fetch_md5() {
  local url=$1 t0 md5 rc ms
  rm -f /tmp/fetch.rc
  t0=$(tb_cs)
  md5=$( { wget -q -O - "$url" 2>/tmp/fetch.err; echo $? >/tmp/fetch.rc; } | md5sum | cut -d' ' -f1)
  ms=$(( ($(tb_cs) - t0) * 10 ))
  rc=$(cat /tmp/fetch.rc 2>/dev/null)
  if [ "$rc" = 0 ]; then
    tb fetch ok "$url" md5="$md5" ms=$ms
  else
    tb fetch fail "$url" rc="${rc:-none}" md5="$md5" ms=$ms err="$(tb_oneline </tmp/fetch.err)"
    return 1
  fi
}

# tb_gen <file> <MiB>  random file to upload, with its hash
#   -> TESTBED: gen ok <file> md5= bytes= ms=
tb_gen() {
  local f=$1 mib=$2 t0
  t0=$(tb_cs)
  dd if=/dev/urandom of="$f" bs=1048576 count="$mib" 2>/tmp/gen.err || { tb gen fail "$f" err="$(tb_oneline </tmp/gen.err)"; return 1; }
  tb gen ok "$f" md5="$(md5sum "$f" | cut -d' ' -f1)" bytes="$(wc -c <"$f" | tr -d ' ')" ms=$(( ($(tb_cs) - t0) * 10 ))
}

# tb_send <what> <host> <port> <file>  sends the file over one TCP connection; busybox nc
# half-closes (shutdown SHUT_WR) at the end of stdin and keeps reading, so the reply
# the host sends after seeing EOF still arrives.
#   -> TESTBED: <what> ok <host>:<port> reply=<first reply line, spaces as _> ms= rc=
tb_send() {
  local what=$1 host=$2 port=$3 f=$4 t0 rc reply ms
  t0=$(tb_cs)
  nc "$host" "$port" <"$f" >/tmp/send.out 2>/tmp/send.err
  rc=$?
  ms=$(( ($(tb_cs) - t0) * 10 ))
  reply=$(head -1 /tmp/send.out | tr -d '\r\n' | tb_oneline)
  if [ $rc = 0 ] && [ -n "$reply" ]; then
    tb "$what" ok "$host:$port" reply="$reply" ms=$ms rc=$rc
  else
    tb "$what" fail "$host:$port" reply="${reply:-none}" ms=$ms rc=$rc err="$(tb_oneline </tmp/send.err)"
    return 1
  fi
}

# tb_say <what> <host> <port> <payload>  tb_send with a short payload (no newline added)
tb_say() {
  printf '%s' "$4" >/tmp/say.in
  tb_send "$1" "$2" "$3" /tmp/say.in
}

# tb_tcp_refused <host> <port> [nc|wget]  a connection that must be refused; ok only when
# the tool fails with "Connection refused" (a timeout or any other error is a fail).
#   -> TESTBED: refused ok <host>:<port> tool= ms= err=<tool's message, spaces as _>
tb_tcp_refused() {
  local host=$1 port=$2 tool=${3:-nc} t0 rc out ms
  t0=$(tb_cs)
  if [ "$tool" = wget ]; then
    out=$(timeout 20 wget -q -O /dev/null "http://$host:$port/" 2>&1)
  else
    out=$(timeout 20 nc "$host" "$port" </dev/null 2>&1)
  fi
  rc=$?
  ms=$(( ($(tb_cs) - t0) * 10 ))
  out=$(echo "$out" | grep -v '^Connecting to' | head -1 | tr -d '\r\n' | tb_oneline)
  if [ $rc != 0 ] && echo "$out" | grep -q 'Connection_refused'; then
    tb refused ok "$host:$port" tool="$tool" ms=$ms err="$out"
  else
    tb refused fail "$host:$port" tool="$tool" ms=$ms rc=$rc err="${out:-none}"
    return 1
  fi
}

# tb_tcp_parallel <host> <port> <n> [secs]  n connections at once, each sending "req-<i>\n"
# and expecting one line "<token> req-<i>" back; ok counts the connections whose reply
# names their own request, distinct the different tokens among them. A watchdog kills
# connections still open after secs so a lost one is counted, not waited for forever.
#   -> TESTBED: parallel ok|fail <host>:<port> n= ok= distinct= errs= ms= [err=first]
tb_tcp_parallel() {
  local host=$1 port=$2 n=$3 secs=${4:-60} i=0 pids='' dog t0 ms ok distinct errs first
  rm -rf /tmp/par
  mkdir -p /tmp/par
  while [ $i -lt "$n" ]; do i=$((i + 1)); echo "req-$i" >/tmp/par/$i.in; done
  t0=$(tb_cs)
  i=0
  while [ $i -lt "$n" ]; do
    i=$((i + 1))
    nc "$host" "$port" </tmp/par/$i.in >/tmp/par/$i.out 2>/tmp/par/$i.err &
    pids="$pids $!"
  done
  # the watchdog's sleep outlives a kill of its subshell; it must not keep fd 7 open
  ( exec 7>&-; sleep "$secs"; kill $pids ) >/dev/null 2>&1 &
  dog=$!
  wait $pids
  ms=$(( ($(tb_cs) - t0) * 10 ))
  kill $dog 2>/dev/null
  wait $dog 2>/dev/null
  set -- $(awk 'FNR == 1 { f = FILENAME; sub(/.*\//, "", f); sub(/\.out$/, "", f)
                  if (NF == 2 && $2 == "req-" f) { ok++; if (!($1 in seen)) { seen[$1] = 1; d++ } } }
                END { print ok + 0, d + 0 }' /tmp/par/*.out)
  ok=$1 distinct=$2
  errs=$(find /tmp/par -name '*.err' -size +0 | wc -l)
  first=$(cat /tmp/par/*.err | head -1 | tb_oneline)
  if [ "$ok" = "$n" ]; then
    tb parallel ok "$host:$port" n="$n" ok="$ok" distinct="$distinct" errs="$errs" ms=$ms
  else
    tb parallel fail "$host:$port" n="$n" ok="$ok" distinct="$distinct" errs="$errs" ms=$ms err="${first:-none}"
    return 1
  fi
}

# One TCP connection held open across script steps: nc reads a fifo that this shell
# keeps open on fd 7, so the connection only half-closes at tb_hold_close. Background
# jobs started meanwhile inherit fd 7; they must have exited before tb_hold_close.
# tb_hold_open <host> <port>  -> TESTBED: hold-open ok <host>:<port>
tb_hold_open() {
  rm -f /tmp/hold.in /tmp/hold.out /tmp/hold.err
  mkfifo /tmp/hold.in
  : >/tmp/hold.out
  nc "$1" "$2" </tmp/hold.in >/tmp/hold.out 2>/tmp/hold.err &
  TB_HOLD_PID=$!
  exec 7>/tmp/hold.in
  tb hold-open ok "$1:$2" pid=$TB_HOLD_PID
}

# tb_hold_send <line> <expected-reply-line> [secs]  writes a line, waits for the reply
#   -> TESTBED: hold-send ok <line> got=<reply> ms= at=<tb_cs when the reply was seen>
tb_hold_send() {
  local line=$1 want=$2 secs=${3:-10} t0 end
  t0=$(tb_cs)
  end=$((t0 + secs * 100))
  echo "$line" >&7
  while ! grep -qx "$want" /tmp/hold.out; do
    if [ "$(tb_cs)" -gt $end ] || ! kill -0 "$TB_HOLD_PID" 2>/dev/null; then
      tb hold-send fail "$line" want="$want" got="$(tb_oneline </tmp/hold.out)" err="$(tb_oneline </tmp/hold.err)"
      return 1
    fi
    usleep 20000
  done
  tb hold-send ok "$line" got="$want" ms=$(( ($(tb_cs) - t0) * 10 )) at="$(tb_cs)"
}

# tb_hold_close [secs]  half-closes and waits for nc to see the host's close
#   -> TESTBED: hold-close ok received=<all lines, |-joined> rc=
tb_hold_close() {
  local secs=${1:-10} rc
  exec 7>&-
  ( sleep "$secs"; kill "$TB_HOLD_PID" ) >/dev/null 2>&1 &
  wait "$TB_HOLD_PID"
  rc=$?
  kill $! 2>/dev/null
  if [ $rc = 0 ]; then
    tb hold-close ok received="$(tb_oneline </tmp/hold.out)" rc=$rc
  else
    tb hold-close fail received="$(tb_oneline </tmp/hold.out)" rc=$rc err="$(tb_oneline </tmp/hold.err)"
    return 1
  fi
}
