/**
 * HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as sent by a load balancer in front
 * of the gateway. Pure parsing: `parseProxyHeader(bytes)` says whether the bytes so far hold a
 * complete header, need more, or are not a valid one.
 * Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
 */
import { BlockList, isIP } from 'node:net';

export interface ProxiedAddress {
  readonly address: string;
  readonly port: number;
}

export type ProxyParse =
  /** A complete header; `source` null for LOCAL (v2) or UNKNOWN (v1): use the TCP peer. */
  | { readonly kind: 'header'; readonly length: number; readonly source: ProxiedAddress | null }
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** v1: 107 octets at most, CRLF included. */
const V1_MAX = 107;

/** True when `bytes` (possibly a prefix) could be the start of a PROXY header of either version. */
export function looksLikeProxyHeader(bytes: Buffer): boolean {
  const n = Math.min(bytes.length, 12);
  return (
    bytes.subarray(0, Math.min(n, 6)).equals(V1_PREFIX.subarray(0, Math.min(n, 6))) ||
    bytes.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))
  );
}

export function parseProxyHeader(bytes: Buffer): ProxyParse {
  if (bytes.length === 0) return { kind: 'incomplete' };
  if (bytes[0] === 0x0d) return parseV2(bytes);
  if (bytes[0] === 0x50) return parseV1(bytes);
  return { kind: 'invalid', reason: 'no PROXY header' };
}

function parseV1(bytes: Buffer): ProxyParse {
  const head = bytes.subarray(0, Math.min(bytes.length, V1_PREFIX.length));
  if (!head.equals(V1_PREFIX.subarray(0, head.length))) return { kind: 'invalid', reason: 'no PROXY header' };
  const end = bytes.indexOf('\r\n', 0, 'latin1');
  if (end === -1) return bytes.length >= V1_MAX ? { kind: 'invalid', reason: 'v1 header too long' } : { kind: 'incomplete' };
  if (end + 2 > V1_MAX) return { kind: 'invalid', reason: 'v1 header too long' };
  const parts = bytes.toString('latin1', 0, end).split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { kind: 'header', length, source: null };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { kind: 'invalid', reason: 'malformed v1 header' };
  const [, family, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const version = family === 'TCP4' ? 4 : 6;
  if (isIP(src) !== version || isIP(dst) !== version) return { kind: 'invalid', reason: 'bad v1 address' };
  const port = portOf(sport);
  if (port === null || portOf(dport) === null) return { kind: 'invalid', reason: 'bad v1 port' };
  return { kind: 'header', length, source: { address: src, port } };
}

function portOf(text: string): number | null {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function parseV2(bytes: Buffer): ProxyParse {
  const n = Math.min(bytes.length, V2_SIGNATURE.length);
  if (!bytes.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return { kind: 'invalid', reason: 'no PROXY header' };
  if (bytes.length < 16) return { kind: 'incomplete' };
  const verCmd = bytes[12] as number;
  const family = bytes[13] as number;
  const length = 16 + bytes.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: 'unsupported v2 version' };
  if (bytes.length < length) return { kind: 'incomplete' };
  const command = verCmd & 0x0f;
  if (command === 0x0) return { kind: 'header', length, source: null }; // LOCAL: health checks
  if (command !== 0x1) return { kind: 'invalid', reason: 'unsupported v2 command' };
  if (family === 0x11) {
    if (length < 16 + 12) return { kind: 'invalid', reason: 'short v2 IPv4 block' };
    const address = `${bytes[16]}.${bytes[17]}.${bytes[18]}.${bytes[19]}`;
    return { kind: 'header', length, source: { address, port: bytes.readUInt16BE(24) } };
  }
  if (family === 0x21) {
    if (length < 16 + 36) return { kind: 'invalid', reason: 'short v2 IPv6 block' };
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(bytes.readUInt16BE(16 + i * 2).toString(16));
    return { kind: 'header', length, source: { address: groups.join(':'), port: bytes.readUInt16BE(48) } };
  }
  // UNSPEC or UNIX: no usable address; keep the TCP peer.
  return { kind: 'header', length, source: null };
}

/** Parse `10.0.0.0/8, 127.0.0.1, ::1/128` into a BlockList; throws naming the bad entry. */
export function trustedNetworks(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(address);
    if (family === 0) throw new Error(`not an IP address or network: ${entry}`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, type);
    else {
      const prefix = Number(bits);
      if (!/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) throw new Error(`bad prefix length: ${entry}`);
      list.addSubnet(address, prefix, type);
    }
  }
  return list;
}

export function isTrusted(list: BlockList, address: string): boolean {
  const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  return list.check(plain, isIP(plain) === 4 ? 'ipv4' : 'ipv6');
}
