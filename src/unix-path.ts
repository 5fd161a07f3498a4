/**
 * What occupies a Unix socket path before we bind it. A socket file nobody
 * answers on was left behind by a crashed process and may be replaced; a live
 * one or a non-socket file must not be. Shared by every Unix listener (VM
 * transports, the control API, port forwards).
 */
import fs from 'node:fs';
import net from 'node:net';

export type UnixPathState = 'absent' | 'not-socket' | 'live' | 'stale';

export async function unixPathState(path: string): Promise<UnixPathState> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return 'absent';
  }
  if (!st.isSocket()) return 'not-socket';
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect({ path });
    const done = (v: boolean): void => {
      c.destroy();
      resolve(v);
    };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    c.setTimeout(1000, () => done(false));
  });
  return live ? 'live' : 'stale';
}
