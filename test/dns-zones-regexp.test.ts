/**
 * Zone regexps run on names the guest chooses, so they are matched by RE2
 * (re2js): time linear in the name whatever the pattern. A backtracking
 * matcher took tens of seconds of event loop for `^([a-z0-9]+-?)+$` and a
 * 30-character name, and longer names never finish.
 */
import { describe, it, expect } from 'vitest';
import dnsPacket from 'dns-packet';
import { DnsServer, zoneFromJson, type DnsZone } from '../src/services/dns.js';

// No upstream at all: every name asked here is in a zone, and anything else must not leave the process.
function server(zones: DnsZone[] = []): DnsServer {
  return new DnsServer({ upstreams: [], hostsFile: null, zones });
}

function q(name: string, id = 0x4242): Uint8Array {
  return dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });
}

async function ask(s: DnsServer, name: string, transport: 'udp' | 'tcp' = 'udp'): Promise<{ rcode: string; ips: string[] }> {
  const b = await s.query(q(name), transport);
  expect(b).not.toBeNull();
  const m = dnsPacket.decode(Buffer.from(b!)) as unknown as { rcode: string; answers: { type: string; data: string }[] };
  return { rcode: m.rcode, ips: m.answers.filter((a) => a.type === 'A').map((a) => a.data) };
}

const CATASTROPHIC = '^([a-z0-9]+-?)+$';

describe('zone regexps (RE2)', () => {
  it('answers names that make a backtracking matcher explode, and the next query after them', async () => {
    const s = server([{ name: 'evil.internal.', records: [{ name: '', regexp: CATASTROPHIC, ip: '10.1.2.3' }] }]);
    // 29 letters then a character the group cannot take: every way of splitting the letters is tried by a backtracker.
    const thirty = `${'a'.repeat(29)}_`;
    expect(await ask(s, `${thirty}.evil.internal`)).toEqual({ rcode: 'NXDOMAIN', ips: [] });
    // The longest name DNS can carry (253 characters): four labels, the first three failing at their dot.
    const longest = [`${'a'.repeat(62)}`, `${'b'.repeat(62)}`, `${'c'.repeat(62)}`, `${'d'.repeat(49)}_`].join('.');
    const fqdn = `${longest}.evil.internal`;
    expect(fqdn.length).toBe(253);
    expect(await ask(s, fqdn, 'tcp')).toEqual({ rcode: 'NXDOMAIN', ips: [] });
    // Names the pattern does match are still answered from the zone.
    expect(await ask(s, `${'a'.repeat(29)}-b.evil.internal`)).toEqual({ rcode: 'NOERROR', ips: ['10.1.2.3'] });
    expect(await ask(s, `${'x1-'.repeat(20)}.evil.internal`)).toEqual({ rcode: 'NOERROR', ips: ['10.1.2.3'] });
    // And the server goes on answering.
    expect(await ask(s, 'ok-1.evil.internal')).toEqual({ rcode: 'NOERROR', ips: ['10.1.2.3'] });
    expect(s.stats().local_answer).toBe(3);
    expect(s.stats().local_nxdomain).toBe(2);
  });

  it('rejects patterns RE2 has no linear-time match for at load, naming the zone and the pattern', () => {
    const s = server([{ name: 'keep.internal.', records: [{ name: 'a', ip: '10.0.0.1' }] }]);
    const bad = ['(a)\\1', '^(?=web)', 'x(?!y)', '(?<=a)b', '(?<!a)b', 'a++', '(?i'];
    for (const pattern of bad) {
      let err: (Error & { code?: string }) | undefined;
      try {
        s.addZone({ name: 'bad.internal.', records: [{ name: 'ok', ip: '10.0.0.2' }, { name: '', regexp: pattern, ip: '10.0.0.3' }] });
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err, pattern).toBeDefined();
      expect(err!.code).toBe('ERR_VNETKIT_BAD_OPTION');
      expect(err!.message).toContain('"bad.internal."');
      expect(err!.message).toContain(JSON.stringify(pattern));
    }
    // Nothing of a rejected zone was kept, not even its good records.
    expect(s.zones().map((z) => z.name)).toEqual(['keep.internal.']);
    // The same through the constructor (daemon config) and the gvisor-tap-vsock JSON shape (API).
    expect(() => server([{ name: 'cfg.internal', records: [{ name: '', regexp: '(\\w)\\1', ip: '10.0.0.4' }] }]))
      .toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION', message: expect.stringContaining('"cfg.internal"') }));
    expect(() => zoneFromJson({ Name: 'api.internal.', Records: [{ Name: '', IP: '10.0.0.5', Regexp: '^(?=a)' }], DefaultIP: '' }))
      .toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION', message: expect.stringContaining('"api.internal."') }));
    // At most 256 regexp records per zone (each may run on every query into it), merges included.
    const re = (n: number, from = 0) => Array.from({ length: n }, (_, k) => ({ name: '', regexp: `^h${from + k}-[a-z]+$`, ip: '10.0.1.1' }));
    expect(() => s.addZone({ name: 'many.internal', records: re(257) }))
      .toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION', message: expect.stringContaining('many.internal') }));
    expect(() => zoneFromJson({ Name: 'many.internal', Records: re(257).map((r) => ({ Name: '', IP: r.ip, Regexp: r.regexp })) }))
      .toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION', message: expect.stringContaining('256 regexp') }));
    s.addZone({ name: 'many.internal', records: re(200) });
    expect(() => s.addZone({ name: 'many.internal', records: re(57, 200) })).toThrow(/256 regexp/);
    s.addZone({ name: 'many.internal', records: [...re(56, 200), { name: 'plain', ip: '10.0.1.2' }] });
    expect(s.zones().find((z) => z.name === 'many.internal')!.records.length).toBe(257);
    // Over-long patterns are still refused before compiling.
    expect(() => s.addZone({ name: 'long.internal', records: [{ name: '', regexp: 'a'.repeat(300), ip: '10.0.0.6' }] }))
      .toThrow(expect.objectContaining({ code: 'ERR_VNETKIT_BAD_OPTION', message: expect.stringContaining('long.internal') }));
  });

  it('matches ordinary patterns as before: searched in the part before the zone, case-insensitive, first record wins', async () => {
    const s = server([{
      name: 'apps.internal.',
      records: [
        { name: '', regexp: '^node-[0-9]+$', ip: '10.2.0.1' },
        { name: '', regexp: 'db', ip: '10.2.0.2' },
        { name: '', regexp: '^WEB\\d{1,3}$', ip: '10.2.0.3' },
        { name: '', regexp: '^a\\.b$', ip: '10.2.0.4' },
        { name: '', regexp: '^(?P<svc>api|rpc)-(eu|us)$', ip: '10.2.0.5' },
        { name: '', regexp: '^[[:alpha:]]+$', ip: '10.2.0.6' },
      ],
      defaultIp: '10.2.0.99',
    }]);
    const ip = async (n: string) => (await ask(s, n)).ips[0];
    expect(await ip('node-17.apps.internal')).toBe('10.2.0.1');
    // Anchored patterns stay anchored: this one is not node-N.
    expect(await ip('node-17x.apps.internal')).toBe('10.2.0.99');
    // Unanchored patterns are searched for anywhere (gvisor-tap-vsock's MatchString).
    expect(await ip('my-db-1.apps.internal')).toBe('10.2.0.2');
    // Case does not matter, in the pattern or in the name.
    expect(await ip('web42.apps.internal')).toBe('10.2.0.3');
    expect(await ip('Web42.APPS.internal')).toBe('10.2.0.3');
    expect(await ip('web1234.apps.internal')).toBe('10.2.0.99');
    // Several labels before the zone are matched as one string with its dots.
    expect(await ip('a.b.apps.internal')).toBe('10.2.0.4');
    expect(await ip('axb.apps.internal')).toBe('10.2.0.6');
    // Go's syntax (named groups, POSIX classes) is RE2's.
    expect(await ip('rpc-eu.apps.internal')).toBe('10.2.0.5');
    expect(await ip('rpc-asia.apps.internal')).toBe('10.2.0.99');
    // The zone apex itself never matches a regexp: it has no relative part.
    expect(await ask(s, 'apps.internal')).toEqual({ rcode: 'NOERROR', ips: [] });
  });
});
