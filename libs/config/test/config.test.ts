import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, boolean, integer, list, listenAddress, loadConfig, z } from '../src/index.js';

const schema = z.object({
  POP3_LISTEN: listenAddress.prefault('127.0.0.1:1110'),
  MAX_CONNECTIONS: integer(1).default(100),
  FSYNC: boolean.default(true),
  MECHS: list.default(['PLAIN']),
  LDAP_BIND_PASSWORD: z.string().min(12).optional(),
});

function fails(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message lacks ${JSON.stringify(f)}: ${e.message}`);
    return true;
  });
}

describe('loadConfig', () => {
  it('applies defaults and parses listen addresses, numbers, booleans, lists', () => {
    const c = loadConfig(schema, { env: { MAX_CONNECTIONS: '7', FSYNC: 'off', MECHS: 'PLAIN, LOGIN' } });
    assert.deepEqual(c.POP3_LISTEN, { host: '127.0.0.1', port: 1110 });
    assert.equal(c.MAX_CONNECTIONS, 7);
    assert.equal(c.FSYNC, false);
    assert.deepEqual(c.MECHS, ['PLAIN', 'LOGIN']);
    assert.ok(Object.isFrozen(c));
  });

  it('accepts [v6]:port and off', () => {
    assert.deepEqual(loadConfig(schema, { env: { POP3_LISTEN: '[::1]:995' } }).POP3_LISTEN, { host: '::1', port: 995 });
    assert.equal(loadConfig(schema, { env: { POP3_LISTEN: 'off' } }).POP3_LISTEN, null);
  });

  it('names the key and the bad value', () => {
    fails(() => loadConfig(schema, { env: { POP3_LISTEN: 'localhost' } }), 'POP3_LISTEN', 'host:port', '"localhost"');
    fails(() => loadConfig(schema, { env: { POP3_LISTEN: '1.2.3.4:70000' } }), 'POP3_LISTEN');
    fails(() => loadConfig(schema, { env: { MAX_CONNECTIONS: 'lots' } }), 'MAX_CONNECTIONS', 'whole number');
    fails(() => loadConfig(schema, { env: { MAX_CONNECTIONS: '0' } }), 'MAX_CONNECTIONS');
  });

  it('never prints the value of a secret', () => {
    fails(() => loadConfig(schema, { env: { LDAP_BIND_PASSWORD: 'hunter2' } }), 'LDAP_BIND_PASSWORD');
    try {
      loadConfig(schema, { env: { LDAP_BIND_PASSWORD: 'hunter2' } });
    } catch (e) {
      assert.ok(!(e as Error).message.includes('hunter2'));
    }
  });

  describe('with a YAML file', () => {
    let dir = '';
    after(() => rm(dir, { recursive: true, force: true }));

    it('reads keys in any case, and the environment wins', async () => {
      dir = await mkdtemp(join(tmpdir(), 'postern-config-'));
      const file = join(dir, 'postern.yaml');
      await writeFile(file, 'pop3_listen: 0.0.0.0:110\nmax_connections: 5\nmechs: [LOGIN]\n');
      const c = loadConfig(schema, { env: { CONFIG_FILE: file, MAX_CONNECTIONS: '9' } });
      assert.deepEqual(c.POP3_LISTEN, { host: '0.0.0.0', port: 110 });
      assert.equal(c.MAX_CONNECTIONS, 9);
      assert.deepEqual(c.MECHS, ['LOGIN']);
    });

    it('refuses unknown keys and unreadable files, naming them', async () => {
      const file = join(dir, 'bad.yaml');
      await writeFile(file, 'pop3_lisen: 0.0.0.0:110\n');
      fails(() => loadConfig(schema, { env: { CONFIG_FILE: file } }), 'pop3_lisen', 'unknown key');
      fails(() => loadConfig(schema, { env: { CONFIG_FILE: join(dir, 'missing.yaml') } }), 'CONFIG_FILE');
      await writeFile(file, '- a\n- b\n');
      fails(() => loadConfig(schema, { env: { CONFIG_FILE: file } }), 'CONFIG_FILE', 'mapping');
    });
  });
});
