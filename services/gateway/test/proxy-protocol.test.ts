import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrusted, parseProxyHeader, trustedNetworks } from '../src/proxy-protocol.js';

const v1 = (text: string): Buffer => Buffer.from(text, 'latin1');

function v2(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20 | command, family, 0, 0]);
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

function v2Tcp4(src: number[], dst: number[], sport: number, dport: number, extra = Buffer.alloc(0)): Buffer {
  const body = Buffer.alloc(12);
  body.set(src, 0);
  body.set(dst, 4);
  body.writeUInt16BE(sport, 8);
  body.writeUInt16BE(dport, 10);
  return v2(0x1, 0x11, Buffer.concat([body, extra]));
}

describe('PROXY protocol v1', () => {
  it('TCP4 and TCP6 give the source address; what follows is not part of the header', () => {
    const h = v1('PROXY TCP4 192.0.2.7 198.51.100.1 51234 110\r\nUSER x\r\n');
    assert.deepEqual(parseProxyHeader(h), { kind: 'header', length: 45, source: { address: '192.0.2.7', port: 51234 } });
    const h6 = v1('PROXY TCP6 2001:db8::7 2001:db8::1 40000 995\r\n');
    assert.deepEqual(parseProxyHeader(h6), { kind: 'header', length: h6.length, source: { address: '2001:db8::7', port: 40000 } });
  });

  it('UNKNOWN keeps the TCP peer', () => {
    assert.deepEqual(parseProxyHeader(v1('PROXY UNKNOWN\r\n')), { kind: 'header', length: 15, source: null });
  });

  it('every prefix of a header is incomplete, not invalid', () => {
    const h = v1('PROXY TCP4 192.0.2.7 198.51.100.1 51234 110\r\n');
    for (let i = 1; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)).kind, 'incomplete', `prefix ${i}`);
  });

  it('refuses malformed headers', () => {
    for (const bad of [
      'PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n',
      'PROXY TCP4 999.0.2.7 198.51.100.1 1 2\r\n',
      'PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n',
      'PROXY TCP4 192.0.2.7 198.51.100.1 65536 110\r\n',
      'PROXY TCP4 192.0.2.7 198.51.100.1 01 110\r\n',
      'PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n',
      'USER alice\r\n',
      `PROXY TCP4 ${'1'.repeat(120)}`,
    ]) {
      assert.equal(parseProxyHeader(v1(bad)).kind, 'invalid', bad);
    }
  });
});

describe('PROXY protocol v2', () => {
  it('PROXY over TCP4 and TCP6, with TLVs after the addresses', () => {
    const h = v2Tcp4([192, 0, 2, 7], [198, 51, 100, 1], 51234, 995, Buffer.from([0x04, 0x00, 0x01, 0x00]));
    assert.deepEqual(parseProxyHeader(Buffer.concat([h, v1('rest')])), {
      kind: 'header',
      length: h.length,
      source: { address: '192.0.2.7', port: 51234 },
    });
    const body = Buffer.alloc(36);
    body.writeUInt16BE(0x2001, 0);
    body.writeUInt16BE(0x0db8, 2);
    body.writeUInt16BE(7, 14);
    body.writeUInt16BE(40000, 32);
    const h6 = v2(0x1, 0x21, body);
    assert.deepEqual(parseProxyHeader(h6), { kind: 'header', length: h6.length, source: { address: '2001:db8:0:0:0:0:0:7', port: 40000 } });
  });

  it('LOCAL (health checks) keeps the TCP peer', () => {
    assert.deepEqual(parseProxyHeader(v2(0x0, 0x00, Buffer.alloc(0))), { kind: 'header', length: 16, source: null });
  });

  it('every prefix is incomplete; a wrong version or signature is invalid', () => {
    const h = v2Tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    for (let i = 1; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)).kind, 'incomplete', `prefix ${i}`);
    const wrongVersion = Buffer.from(h);
    wrongVersion[12] = 0x11;
    assert.equal(parseProxyHeader(wrongVersion).kind, 'invalid');
    const wrongSignature = Buffer.from(h);
    wrongSignature[5] = 0x0e;
    assert.equal(parseProxyHeader(wrongSignature).kind, 'invalid');
    assert.equal(parseProxyHeader(v2(0x1, 0x11, Buffer.alloc(4))).kind, 'invalid');
  });
});

describe('trusted networks', () => {
  it('matches addresses and CIDR networks, IPv4-mapped IPv6 included', () => {
    const list = trustedNetworks(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32']);
    assert.equal(isTrusted(list, '10.1.2.3'), true);
    assert.equal(isTrusted(list, '::ffff:10.1.2.3'), true);
    assert.equal(isTrusted(list, '127.0.0.1'), true);
    assert.equal(isTrusted(list, '127.0.0.2'), false);
    assert.equal(isTrusted(list, '2001:db8::1'), true);
    assert.equal(isTrusted(list, '192.0.2.1'), false);
  });

  it('names a bad entry', () => {
    assert.throws(() => trustedNetworks(['10.0.0.0/33']), /10\.0\.0\.0\/33/);
    assert.throws(() => trustedNetworks(['balancer.example']), /balancer\.example/);
  });
});
