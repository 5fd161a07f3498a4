/**
 * VM listeners a guest could connect to are refused unless the caller says
 * so: a guest reaching the host's loopback through the host alias (or any
 * host address through the NAT) could otherwise join the switch as another VM.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine/engine.js';
import { guestReachable } from '../src/transport/listen.js';

const engines: Engine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

function engine(hostLoopback?: boolean): Engine {
  const e = createEngine({ dns: { upstreams: [], hostsFile: null }, hostLoopback });
  engines.push(e);
  return e;
}

describe('Engine.listen: guest-reachable listeners', () => {
  it('tcp:// and udp:// on loopback while hostLoopback is on throw ERR_VNETKIT_GUEST_REACHABLE and bind nothing', async () => {
    const e = engine();
    for (const [url, framing] of [['tcp://127.0.0.1:0', 'qemu'], ['tcp://localhost:0', 'vpnkit'], ['tcp://[::1]:0', 'qemu'], ['udp://127.0.0.1:0', 'dgram']] as const) {
      const err = await e.listen(url, { framing }).then(() => null, (x: unknown) => x);
      expect(err, url).toMatchObject({ code: 'ERR_VNETKIT_GUEST_REACHABLE' });
      expect((err as Error).message).toContain('host alias 192.168.65.2');
      expect((err as Error).message).toContain('allowGuestReachable');
    }
  });

  it('a non-loopback address is reachable through the NAT whatever hostLoopback says', async () => {
    const e = engine(false);
    await expect(e.listen('tcp://0.0.0.0:0', { framing: 'qemu', allowNonLoopback: true })).rejects.toMatchObject({ code: 'ERR_VNETKIT_GUEST_REACHABLE' });
    expect(guestReachable('udp://10.1.2.3:5', false)).toBe('address');
  });

  it('allowGuestReachable: true binds it; so does loopback with hostLoopback off; unix sockets always', async () => {
    const on = engine();
    const l = await on.listen('tcp://127.0.0.1:0', { framing: 'qemu', allowGuestReachable: true });
    await new Promise<void>((resolve, reject) => net.connect(Number(l.address.split(':')[1]), '127.0.0.1', resolve).on('error', reject).unref());
    const d = await on.listen('udp://127.0.0.1:0', { framing: 'dgram', allowGuestReachable: true });
    expect(d.url).toMatch(/^udp:\/\/127\.0\.0\.1:\d+$/);
    const off = engine(false);
    const t = await off.listen('tcp://127.0.0.1:0', { framing: 'qemu' });
    expect(t.url).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const u = await off.listen('udp://127.0.0.1:0', { framing: 'dgram' });
    expect(u.url).toMatch(/^udp:\/\//);
    expect(guestReachable('unix:///tmp/x.sock', true)).toBeNull();
  });
});
