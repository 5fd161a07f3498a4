import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { DhcpServer, encodeSearchList, type DhcpOptions } from '../src/services/dhcp.js';

// ---- a tiny byte-level DHCP client, written independently of the server ----

const SERVER = 0xc0a84101; // 192.168.65.1
const ip = (a: number, b: number, c: number, d: number): number => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

function mac(n: number): Uint8Array {
  return Uint8Array.of(0x02, 0x50, 0x00, 0x00, 0x00, n);
}

interface ReqOpts {
  type: number;
  xid?: number;
  ciaddr?: number;
  broadcast?: boolean;
  requested?: number;
  serverId?: number;
  params?: number[];
  hostname?: string;
  end?: boolean;
}

function request(m: Uint8Array, o: ReqOpts): Uint8Array {
  const opts: number[] = [53, 1, o.type];
  if (o.requested !== undefined) opts.push(50, 4, ...be(o.requested));
  if (o.serverId !== undefined) opts.push(54, 4, ...be(o.serverId));
  if (o.params) opts.push(55, o.params.length, ...o.params);
  if (o.hostname) opts.push(12, o.hostname.length, ...Array.from(o.hostname, (c) => c.charCodeAt(0)));
  if (o.end !== false) opts.push(255);
  const b = new Uint8Array(240 + opts.length);
  b[0] = 1; // BOOTREQUEST
  b[1] = 1;
  b[2] = 6;
  const xid = o.xid ?? 0x12345678;
  b.set(be(xid), 4);
  if (o.broadcast) b[10] = 0x80;
  b.set(be(o.ciaddr ?? 0), 12);
  b.set(m, 28);
  b.set([0x63, 0x82, 0x53, 0x63], 236);
  b.set(opts, 240);
  return b;
}

function be(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

function rd32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** Parse the reply's options into code → list of raw instances, in order. */
function options(reply: Uint8Array): { order: number[]; map: Map<number, Uint8Array> } {
  expect(reply[0]).toBe(2);
  expect(Array.from(reply.subarray(236, 240))).toEqual([0x63, 0x82, 0x53, 0x63]);
  const order: number[] = [];
  const map = new Map<number, Uint8Array>();
  let i = 240;
  for (;;) {
    expect(i).toBeLessThan(reply.length);
    const c = reply[i];
    if (c === 255) break;
    if (c === 0) {
      i++;
      continue;
    }
    const len = reply[i + 1];
    const data = reply.slice(i + 2, i + 2 + len);
    expect(i + 2 + len).toBeLessThanOrEqual(reply.length);
    const prev = map.get(c);
    if (prev) {
      // RFC 3396 concatenation
      const cat = new Uint8Array(prev.length + data.length);
      cat.set(prev);
      cat.set(data, prev.length);
      map.set(c, cat);
    } else {
      order.push(c);
      map.set(c, data);
    }
    i += 2 + len;
  }
  return { order, map };
}

function base(over: Partial<DhcpOptions> = {}): DhcpOptions {
  return {
    serverIp: SERVER,
    prefix: 24,
    router: SERVER,
    dnsServers: [SERVER, ip(10, 0, 0, 53)],
    domainName: 'vm.test',
    searchDomains: ['example.test', 'corp.test'],
    mtu: 1500,
    leaseSeconds: 3600,
    poolStart: ip(192, 168, 65, 3),
    poolEnd: ip(192, 168, 65, 20),
    ...over,
  };
}

describe('DHCP DORA', () => {
  it('offers and acks with every option byte-exact', () => {
    const s = new DhcpServer(base());
    const m = mac(1);
    const params = [1, 3, 6, 15, 119, 26];
    const off = s.handle(request(m, { type: 1, xid: 0xdeadbeef, broadcast: true, params }), m, 1000);
    expect(off).not.toBeNull();
    expect(off!.broadcast).toBe(true);
    expect(off!.reply.length).toBeGreaterThanOrEqual(300);
    const r = off!.reply;
    expect(rd32(r, 4)).toBe(0xdeadbeef);
    expect(r[10]).toBe(0x80); // flags echoed
    const yi = rd32(r, 16);
    expect(yi).toBe(ip(192, 168, 65, 3));
    expect(off!.yiaddr).toBe(yi);
    expect(Array.from(r.subarray(28, 34))).toEqual(Array.from(m));
    const o = options(r);
    expect(Array.from(o.map.get(53)!)).toEqual([2]);
    expect(Array.from(o.map.get(54)!)).toEqual([192, 168, 65, 1]);
    expect(Array.from(o.map.get(51)!)).toEqual([0, 0, 0x0e, 0x10]); // 3600
    expect(Array.from(o.map.get(58)!)).toEqual([0, 0, 0x07, 0x08]); // 1800
    expect(Array.from(o.map.get(59)!)).toEqual([0, 0, 0x0c, 0x4e]); // 3150
    expect(Array.from(o.map.get(1)!)).toEqual([255, 255, 255, 0]);
    expect(Array.from(o.map.get(3)!)).toEqual([192, 168, 65, 1]);
    expect(Array.from(o.map.get(6)!)).toEqual([192, 168, 65, 1, 10, 0, 0, 53]);
    expect(new TextDecoder().decode(o.map.get(15)!)).toBe('vm.test');
    // RFC 3397: "example.test" then "corp" + pointer to "test" at offset 8
    expect(Array.from(o.map.get(119)!)).toEqual([
      7, ...Array.from('example', (c) => c.charCodeAt(0)), 4, ...Array.from('test', (c) => c.charCodeAt(0)), 0,
      4, ...Array.from('corp', (c) => c.charCodeAt(0)), 0xc0, 8,
    ]);
    expect(Array.from(o.map.get(26)!)).toEqual([0x05, 0xdc]);
    // 53 and 54 first, then the requested parameters in the client's order.
    const requested = o.order.filter((c) => params.includes(c));
    expect(requested).toEqual(params);
    expect(o.order.slice(0, 2)).toEqual([53, 54]);

    const ack = s.handle(request(m, { type: 3, requested: yi, serverId: SERVER, params, hostname: 'guest1' }), m, 2000);
    expect(ack).not.toBeNull();
    expect(ack!.broadcast).toBe(false); // no broadcast flag: unicast to yiaddr
    expect(ack!.dest).toBe(yi);
    const a = options(ack!.reply);
    expect(Array.from(a.map.get(53)!)).toEqual([5]);
    expect(rd32(ack!.reply, 16)).toBe(yi);
    expect(Array.from(a.map.get(51)!)).toEqual([0, 0, 0x0e, 0x10]);
    const leases = s.leases();
    expect(leases).toEqual([{ mac: '02:50:00:00:00:01', ip: yi, hostname: 'guest1', expiresAt: 2000 + 3600_000, static: false }]);
    expect(s.isAllocated(yi)).toBe(true);
    expect(s.stats().ack).toBe(1);
  });

  it('announces MTU 65520 and the unrequested options too', () => {
    const s = new DhcpServer(base({ mtu: 65520 }));
    const m = mac(2);
    const off = s.handle(request(m, { type: 1 }), m, 0)!;
    const o = options(off.reply);
    expect(Array.from(o.map.get(26)!)).toEqual([0xff, 0xf0]);
    for (const c of [1, 3, 6, 15, 119]) expect(o.map.has(c)).toBe(true);
    expect(o.map.has(28)).toBe(false); // broadcast only when asked
    const off2 = s.handle(request(m, { type: 1, params: [28] }), m, 0)!;
    expect(Array.from(options(off2.reply).map.get(28)!)).toEqual([192, 168, 65, 255]);
  });

  it('keeps a client on its address across DISCOVERs and renews by unicast', () => {
    const s = new DhcpServer(base());
    const m = mac(3);
    const a = rd32(s.handle(request(m, { type: 1 }), m, 0)!.reply, 16);
    const b = rd32(s.handle(request(m, { type: 1 }), m, 10)!.reply, 16);
    expect(b).toBe(a);
    s.handle(request(m, { type: 3, requested: a, serverId: SERVER }), m, 20);
    // Renewing: ciaddr set, no server id / requested ip; reply unicast to ciaddr.
    const ren = s.handle(request(m, { type: 3, ciaddr: a }), m, 1_000_000)!;
    expect(options(ren.reply).map.get(53)![0]).toBe(5);
    expect(ren.broadcast).toBe(false);
    expect(ren.dest).toBe(a);
    expect(rd32(ren.reply, 12)).toBe(a);
    expect(s.leases()[0].expiresAt).toBe(1_000_000 + 3600_000);
    // After expiry a fresh DISCOVER still gets the same address back.
    expect(rd32(s.handle(request(m, { type: 1 }), m, 50_000_000)!.reply, 16)).toBe(a);
  });

  it('honours a requested address from the pool and skips server/router/reserved', () => {
    const s = new DhcpServer(base({ poolStart: ip(192, 168, 65, 1), poolEnd: ip(192, 168, 65, 5), router: ip(192, 168, 65, 2), reservedIps: [ip(192, 168, 65, 3)] }));
    const m = mac(4);
    expect(rd32(s.handle(request(m, { type: 1, requested: ip(192, 168, 65, 5) }), m, 0)!.reply, 16)).toBe(ip(192, 168, 65, 5));
    const n = mac(5);
    expect(rd32(s.handle(request(n, { type: 1 }), n, 0)!.reply, 16)).toBe(ip(192, 168, 65, 4));
    const k = mac(6);
    expect(s.handle(request(k, { type: 1 }), k, 0)).toBeNull();
  });
});

describe('DHCP leases', () => {
  it('serves static leases', () => {
    const s = new DhcpServer(base({ staticLeases: [{ mac: '02:50:00:00:00:09', ip: ip(192, 168, 65, 200) }] }));
    const m = mac(9);
    const off = s.handle(request(m, { type: 1 }), m, 0)!;
    expect(rd32(off.reply, 16)).toBe(ip(192, 168, 65, 200));
    const ack = s.handle(request(m, { type: 3, requested: ip(192, 168, 65, 200), serverId: SERVER }), m, 0)!;
    expect(options(ack.reply).map.get(53)![0]).toBe(5);
    expect(s.leases()[0].static).toBe(true);
    // Nobody else is ever offered it, even by asking.
    const other = mac(10);
    const o2 = s.handle(request(other, { type: 1, requested: ip(192, 168, 65, 200) }), other, 0)!;
    expect(rd32(o2.reply, 16)).not.toBe(ip(192, 168, 65, 200));
    // And asking for another address gets a NAK.
    const nak = s.handle(request(m, { type: 3, requested: ip(192, 168, 65, 5) }), m, 0)!;
    expect(options(nak.reply).map.get(53)![0]).toBe(6);
  });

  it('pool exhaustion: pool of 2, third client gets no offer and a warning', () => {
    const warns: string[] = [];
    const log = { debug() {}, info() {}, warn: (msg: string) => warns.push(msg), error() {}, limited() {}, child() { return log; }, enabled: () => true };
    const s = new DhcpServer(base({ poolStart: ip(192, 168, 65, 3), poolEnd: ip(192, 168, 65, 4), log }));
    const got = [1, 2].map((n) => rd32(s.handle(request(mac(n), { type: 1 }), mac(n), 0)!.reply, 16));
    expect(new Set(got).size).toBe(2);
    expect(s.handle(request(mac(3), { type: 1 }), mac(3), 1)).toBeNull();
    expect(s.stats().pool_exhausted).toBe(1);
    expect(warns.some((w) => /exhausted/.test(w))).toBe(true);
    // Once an offer's hold runs out without a REQUEST, the address is reusable.
    const late = s.handle(request(mac(3), { type: 1 }), mac(3), 120_000);
    expect(late).not.toBeNull();
    expect(got).toContain(rd32(late!.reply, 16));
  });

  it('bounds lease records by maxLeases', () => {
    const s = new DhcpServer(base({ maxLeases: 3 }));
    for (let n = 1; n <= 3; n++) {
      const a = rd32(s.handle(request(mac(n), { type: 1 }), mac(n), 0)!.reply, 16);
      s.handle(request(mac(n), { type: 3, requested: a, serverId: SERVER }), mac(n), 0);
    }
    expect(s.handle(request(mac(4), { type: 1 }), mac(4), 1000)).toBeNull();
    expect(s.stats().leaseRecords).toBe(3);
    // An expired lease is evicted to make room.
    expect(s.handle(request(mac(4), { type: 1 }), mac(4), 3600_001)).not.toBeNull();
    expect(s.stats().leaseRecords).toBe(3);
  });

  it('NAKs a REQUEST for an address that was not offered, ignores other servers', () => {
    const s = new DhcpServer(base());
    const m = mac(1);
    const a = rd32(s.handle(request(m, { type: 1 }), m, 0)!.reply, 16);
    const nak = s.handle(request(m, { type: 3, requested: (a + 1) >>> 0, serverId: SERVER }), m, 0)!;
    expect(nak.broadcast).toBe(true);
    expect(rd32(nak.reply, 16)).toBe(0);
    expect(options(nak.reply).map.get(53)![0]).toBe(6);
    expect(options(nak.reply).map.has(51)).toBe(false);
    // INIT-REBOOT into a foreign subnet: NAK.
    const nak2 = s.handle(request(m, { type: 3, requested: ip(10, 1, 2, 3) }), m, 0)!;
    expect(options(nak2.reply).map.get(53)![0]).toBe(6);
    // REQUEST naming another server: silence, and our offer is withdrawn.
    expect(s.handle(request(m, { type: 3, requested: a, serverId: ip(192, 168, 65, 99) }), m, 0)).toBeNull();
    expect(s.stats().request_other_server).toBe(1);
    expect(s.isAllocated(a)).toBe(false);
  });

  it('INIT-REBOOT of an unknown client keeps its free address (authoritative)', () => {
    const s = new DhcpServer(base());
    const m = mac(7);
    const want = ip(192, 168, 65, 10);
    const ack = s.handle(request(m, { type: 3, requested: want }), m, 0)!;
    expect(options(ack.reply).map.get(53)![0]).toBe(5);
    expect(rd32(ack.reply, 16)).toBe(want);
    // Someone else asking for it now is refused.
    const nak = s.handle(request(mac(8), { type: 3, requested: want }), mac(8), 0)!;
    expect(options(nak.reply).map.get(53)![0]).toBe(6);
  });

  it('RELEASE frees the address for another client', () => {
    const s = new DhcpServer(base({ poolStart: ip(192, 168, 65, 3), poolEnd: ip(192, 168, 65, 3) }));
    const a = mac(1);
    const b = mac(2);
    const addr = rd32(s.handle(request(a, { type: 1 }), a, 0)!.reply, 16);
    s.handle(request(a, { type: 3, requested: addr, serverId: SERVER }), a, 0);
    expect(s.handle(request(b, { type: 1 }), b, 10)).toBeNull();
    expect(s.handle(request(a, { type: 7, ciaddr: addr, serverId: SERVER }), a, 20)).toBeNull();
    expect(s.stats().release).toBe(1);
    expect(s.leases()).toEqual([]);
    const off = s.handle(request(b, { type: 1 }), b, 30)!;
    expect(rd32(off.reply, 16)).toBe(addr);
    s.handle(request(b, { type: 3, requested: addr, serverId: SERVER }), b, 30);
    expect(s.leases().map((l) => l.mac)).toEqual(['02:50:00:00:00:02']);
    // The old owner asking for it back over INIT-REBOOT is refused.
    const nak = s.handle(request(a, { type: 3, requested: addr }), a, 40)!;
    expect(options(nak.reply).map.get(53)![0]).toBe(6);
  });

  it('release(mac) and reserve(mac, ip) from the engine', () => {
    const s = new DhcpServer(base());
    const m = mac(1);
    s.reserve('02:50:00:00:00:01', ip(192, 168, 65, 15));
    expect(s.isAllocated(ip(192, 168, 65, 15))).toBe(true);
    const off = s.handle(request(m, { type: 1 }), m, 0)!;
    expect(rd32(off.reply, 16)).toBe(ip(192, 168, 65, 15));
    // Nobody else gets the reserved address.
    const other = s.handle(request(mac(2), { type: 1, requested: ip(192, 168, 65, 15) }), mac(2), 0)!;
    expect(rd32(other.reply, 16)).not.toBe(ip(192, 168, 65, 15));
    s.release('02:50:00:00:00:01');
    expect(s.isAllocated(ip(192, 168, 65, 15))).toBe(false);
    // The `reserved` argument forces the address for this message.
    const forced = s.handle(request(mac(3), { type: 1 }), mac(3), 0, ip(192, 168, 65, 17))!;
    expect(rd32(forced.reply, 16)).toBe(ip(192, 168, 65, 17));
    const nak = s.handle(request(mac(3), { type: 3, requested: ip(192, 168, 65, 4), serverId: SERVER }), mac(3), 0, ip(192, 168, 65, 17))!;
    expect(options(nak.reply).map.get(53)![0]).toBe(6);
  });

  it('DECLINE quarantines the address', () => {
    const s = new DhcpServer(base({ poolStart: ip(192, 168, 65, 3), poolEnd: ip(192, 168, 65, 4) }));
    const m = mac(1);
    const a = rd32(s.handle(request(m, { type: 1 }), m, 0)!.reply, 16);
    s.handle(request(m, { type: 3, requested: a, serverId: SERVER }), m, 0);
    expect(s.handle(request(m, { type: 4, requested: a, serverId: SERVER }), m, 0)).toBeNull();
    const b = rd32(s.handle(request(m, { type: 1 }), m, 1)!.reply, 16);
    expect(b).not.toBe(a);
  });
});

describe('DHCP INFORM', () => {
  it('ACKs with configuration, no yiaddr and no lease time, unicast to ciaddr', () => {
    const s = new DhcpServer(base());
    const m = mac(1);
    const me = ip(192, 168, 65, 77);
    const r = s.handle(request(m, { type: 8, ciaddr: me, params: [6, 1] }), m, 0)!;
    expect(r.broadcast).toBe(false);
    expect(r.yiaddr).toBe(0);
    expect(r.dest).toBe(me);
    expect(rd32(r.reply, 16)).toBe(0);
    expect(rd32(r.reply, 12)).toBe(me);
    const o = options(r.reply);
    expect(o.map.get(53)![0]).toBe(5);
    expect(o.order.slice(2, 4)).toEqual([6, 1]);
    for (const c of [51, 58, 59]) expect(o.map.has(c)).toBe(false);
    expect(s.leases()).toEqual([]);
  });
});

describe('DHCP malformed input', () => {
  const m = mac(1);
  const cases: [string, () => Uint8Array, string][] = [
    ['short', () => new Uint8Array(100), 'drop_short'],
    ['bad cookie', () => { const b = request(m, { type: 1 }); b[236] = 0; return b; }, 'drop_bad_cookie'],
    ['reply op', () => { const b = request(m, { type: 1 }); b[0] = 2; return b; }, 'drop_not_request'],
    ['option past end', () => { const b = request(m, { type: 1, end: false }); const c = new Uint8Array(b.length + 2); c.set(b); c[b.length] = 12; c[b.length + 1] = 40; return c; }, 'drop_bad_options'],
    ['no message type', () => { const b = request(m, { type: 1 }); b[240] = 0; b[241] = 0; b[242] = 0; return b; }, 'drop_no_msg_type'],
    ['bad type length', () => { const b = request(m, { type: 1 }); b[241] = 2; return b; }, 'drop_bad_options'],
    ['server message', () => request(m, { type: 2 }), 'drop_unexpected_type'],
  ];
  for (const [name, make, reason] of cases) {
    it(`drops ${name} and counts ${reason}`, () => {
      const s = new DhcpServer(base());
      expect(s.handle(make(), m, 0)).toBeNull();
      expect(s.stats()[reason]).toBe(1);
    });
  }

  it('accepts a message without END', () => {
    const s = new DhcpServer(base());
    expect(s.handle(request(m, { type: 1, end: false }), m, 0)).not.toBeNull();
  });

  it('never throws on random bytes (fast-check)', () => {
    const s = new DhcpServer(base());
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ minLength: 6, maxLength: 6 }), (bytes, mc) => {
        const r = s.handle(bytes, mc, 0);
        expect(r).toBeNull(); // random bytes essentially never carry the cookie
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on random options after a valid header (fast-check)', () => {
    const s = new DhcpServer(base());
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 255 }), (opts, type, mn) => {
        const hdr = request(mac(mn), { type, end: false }).subarray(0, 240);
        const b = new Uint8Array(240 + 3 + opts.length);
        b.set(hdr);
        b.set([53, 1, type], 240);
        b.set(opts, 243);
        const r = s.handle(b, mac(mn), 0);
        if (r !== null) {
          expect(r.reply.length).toBeGreaterThanOrEqual(300);
          expect(r.reply[0]).toBe(2);
        }
      }),
      { numRuns: 3000 },
    );
    // The random traffic leased at most the pool.
    expect(s.leases().length).toBeLessThanOrEqual(18);
  });
});

describe('DHCP config', () => {
  it('encodes search lists with compression and rejects bad names', () => {
    expect(Array.from(encodeSearchList(['a.b', 'c.a.b', 'a.b']))).toEqual([1, 97, 1, 98, 0, 1, 99, 0xc0, 0, 0xc0, 0]);
    expect(() => new DhcpServer(base({ searchDomains: ['bad..name'] }))).toThrow(/searchDomains/);
    expect(() => new DhcpServer(base({ poolStart: ip(10, 0, 0, 1), poolEnd: ip(10, 0, 0, 5) }))).toThrow();
  });
});

describe('DHCP per attachment', () => {
  const yi = (r: { reply: Uint8Array } | null) => rd32(r!.reply, 16);
  const type = (r: { reply: Uint8Array } | null) => options(r!.reply).map.get(53)![0];

  it('gives one attachment at most maxLeasesPerVm records whatever client MACs it invents; others still get addresses', () => {
    const s = new DhcpServer(base({ maxLeasesPerVm: 4 }));
    const vmA = 1;
    const vmB = 2;
    const offered: number[] = [];
    for (let n = 10; n < 40; n++) {
      const r = s.handle(request(mac(n), { type: 1 }), mac(n), 0, undefined, vmA);
      if (r !== null) offered.push(yi(r));
    }
    expect(offered.length).toBe(4);
    expect(s.stats().perVmRefused).toBe(26);
    expect(s.quotaStats()).toMatchObject({ used: 4, perVm: 4, maxVmUsed: 4, refusedVm: 26 });
    // An INIT-REBOOT for a free address from a fifth MAC is refused too.
    const reboot = s.handle(request(mac(50), { type: 3, requested: ip(192, 168, 65, 19) }), mac(50), 0, undefined, vmA);
    expect(type(reboot)).toBe(6);
    expect(s.stats().nak_per_vm_limit).toBe(1);
    // B is not affected.
    const off = s.handle(request(mac(1), { type: 1 }), mac(1), 0, undefined, vmB);
    expect(type(off)).toBe(2);
    expect(type(s.handle(request(mac(1), { type: 3, requested: yi(off), serverId: SERVER }), mac(1), 0, undefined, vmB))).toBe(5);
    // Once A's offers have expired, its own oldest record makes room for a new client.
    expect(type(s.handle(request(mac(60), { type: 1 }), mac(60), 120_000, undefined, vmA))).toBe(2);
    expect(s.quotaStats().used).toBe(5);
  });

  it('never hands one attachment\'s address to another, even for the same client MAC', () => {
    const s = new DhcpServer(base({ maxLeasesPerVm: 4 }));
    const m = mac(1);
    const off = s.handle(request(m, { type: 1 }), m, 0, undefined, 1);
    const a = yi(off);
    expect(type(s.handle(request(m, { type: 3, requested: a, serverId: SERVER }), m, 0, undefined, 1))).toBe(5);
    // Attachment 2 asks for the same address: selecting, init-reboot and renewing are all refused.
    expect(type(s.handle(request(m, { type: 3, requested: a, serverId: SERVER }), m, 10, undefined, 2))).toBe(6);
    expect(type(s.handle(request(m, { type: 3, requested: a }), m, 10, undefined, 2))).toBe(6);
    expect(type(s.handle(request(m, { type: 3, ciaddr: a }), m, 10, undefined, 2))).toBe(6);
    // A DISCOVER from it is offered another address.
    expect(yi(s.handle(request(m, { type: 1, requested: a }), m, 10, undefined, 2))).not.toBe(a);
    expect(s.leases()).toEqual([expect.objectContaining({ ip: a, vm: 1 })]);
    expect(s.mayClaim(a, 2, '02:50:00:00:00:63', 10)).toBe(false);
    expect(s.mayClaim(a, 1, '02:50:00:00:00:01', 10)).toBe(true);
  });

  it('asks the switch before offering or acking (mayHold)', () => {
    const held = new Set([ip(192, 168, 65, 3)]);
    const s = new DhcpServer(base({ mayHold: (a, vm) => vm === 9 || !held.has(a) }));
    const m = mac(1);
    expect(yi(s.handle(request(m, { type: 1 }), m, 0, undefined, 1))).toBe(ip(192, 168, 65, 4));
    const nak = s.handle(request(mac(2), { type: 3, requested: ip(192, 168, 65, 3) }), mac(2), 0, undefined, 1);
    expect(type(nak)).toBe(6);
    expect(s.stats().nak_in_use).toBe(1);
    expect(type(s.handle(request(mac(2), { type: 3, requested: ip(192, 168, 65, 3) }), mac(2), 0, undefined, 9))).toBe(5);
  });

  it('frees what an attachment held when it leaves, and keeps reservations and static leases', () => {
    const s = new DhcpServer(base({ maxLeasesPerVm: 4, staticLeases: [{ mac: '02:50:00:00:00:07', ip: ip(192, 168, 65, 100) }] }));
    s.reserve('02:50:00:00:00:08', ip(192, 168, 65, 50));
    const lease = (n: number, vm: number) => {
      const off = s.handle(request(mac(n), { type: 1 }), mac(n), 0, undefined, vm);
      return s.handle(request(mac(n), { type: 3, requested: yi(off), serverId: SERVER }), mac(n), 0, undefined, vm);
    };
    for (const n of [1, 2, 7, 8]) expect(type(lease(n, 1))).toBe(5);
    expect(type(lease(3, 2))).toBe(5);
    // A declined address counts against the attachment that declined it.
    const d = s.handle(request(mac(2), { type: 4, requested: ip(192, 168, 65, 4), serverId: SERVER }), mac(2), 0, undefined, 1);
    expect(d).toBeNull();
    expect(s.leases().length).toBe(4);
    s.releaseVm(1);
    expect(s.leases().map((l) => [l.mac, l.vm])).toEqual([['02:50:00:00:00:07', 1], ['02:50:00:00:00:03', 2]]);
    expect(s.quotaStats().used).toBe(1);
    // The reserved address stays pinned: nobody else may use it, its MAC gets it back on a new attachment.
    expect(s.isAllocated(ip(192, 168, 65, 50))).toBe(true);
    expect(s.mayClaim(ip(192, 168, 65, 50), 5, '02:50:00:00:00:09', 0)).toBe(false);
    expect(yi(s.handle(request(mac(8), { type: 1 }), mac(8), 0, undefined, 6))).toBe(ip(192, 168, 65, 50));
    // The static lease too.
    expect(s.mayClaim(ip(192, 168, 65, 100), 5, '02:50:00:00:00:09', 0)).toBe(false);
    expect(yi(s.handle(request(mac(7), { type: 1 }), mac(7), 0, undefined, 6))).toBe(ip(192, 168, 65, 100));
    // The freed and the quarantined addresses are back in the pool.
    expect(s.mayClaim(ip(192, 168, 65, 3), 5, '02:50:00:00:00:09', 0)).toBe(true);
    expect(s.mayClaim(ip(192, 168, 65, 4), 5, '02:50:00:00:00:09', 0)).toBe(true);
  });
});
