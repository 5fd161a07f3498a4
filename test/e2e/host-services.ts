/**
 * Host-side peers for the e2e guests: a DNS upstream the engine forwards to,
 * and a UDP echo server the guest reaches through the host alias. Both bind
 * 127.0.0.1 on a random port and record what they saw, so a test can tell an
 * answer the engine made up from one that really crossed the NAT.
 */
import * as dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

export interface SeenQuery {
  name: string;
  type: string;
  from: { address: string; port: number };
}

export interface DnsUpstream {
  port: number;
  queries: SeenQuery[];
  close(): Promise<void>;
}

/**
 * Answers A queries for the names in `records` (lower-case keys), NOERROR with no
 * answers for other types of those names, NXDOMAIN for everything else.
 */
export async function startDnsUpstream(records: Record<string, string>): Promise<DnsUpstream> {
  const sock = dgram.createSocket('udp4');
  const queries: SeenQuery[] = [];
  sock.on('message', (msg, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return; // not DNS: a real resolver would ignore it too
    }
    const question = q.questions?.[0];
    if (q.type !== 'query' || !question) return;
    const name = question.name.toLowerCase().replace(/\.$/, '');
    queries.push({ name, type: question.type, from: { address: rinfo.address, port: rinfo.port } });
    const addr = records[name];
    const answers: dnsPacket.Answer[] =
      addr !== undefined && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 60, data: addr }] : [];
    // the rcode is the low 4 bits of the flags word; 3 = NXDOMAIN
    const rcode = addr === undefined ? 3 : 0;
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: [question],
      answers,
    });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await bind(sock);
  return {
    port: sock.address().port,
    queries,
    close: () => new Promise<void>((res) => sock.close(() => res())),
  };
}

export interface UdpEcho {
  port: number;
  /** every datagram received, with its source */
  seen: { data: string; from: { address: string; port: number } }[];
  close(): Promise<void>;
}

/** Replies `prefix + payload` to each datagram, from the port it was sent to. */
export async function startUdpEcho(prefix = 'echo:'): Promise<UdpEcho> {
  const sock = dgram.createSocket('udp4');
  const seen: UdpEcho['seen'] = [];
  sock.on('message', (msg, rinfo) => {
    const data = msg.toString('latin1');
    seen.push({ data, from: { address: rinfo.address, port: rinfo.port } });
    sock.send(Buffer.from(prefix + data, 'latin1'), rinfo.port, rinfo.address);
  });
  await bind(sock);
  return {
    port: sock.address().port,
    seen,
    close: () => new Promise<void>((res) => sock.close(() => res())),
  };
}

function bind(sock: dgram.Socket): Promise<void> {
  return new Promise((res, rej) => {
    sock.once('error', rej);
    sock.bind(0, '127.0.0.1', () => {
      sock.off('error', rej);
      res();
    });
  });
}
