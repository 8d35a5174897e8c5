/** Certificate for STLS and 995: the configured pair, or a self-signed one made on first run. */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import selfsigned from 'selfsigned';
import { ConfigError } from '@postern/config';

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly generated: boolean;
}

export async function ensureTlsFiles(certPath: string | undefined, keyPath: string | undefined, dataDir: string): Promise<TlsFiles> {
  if (certPath || keyPath) {
    if (!certPath || !keyPath) throw new ConfigError(`${certPath ? 'TLS_KEY' : 'TLS_CERT'}: set both TLS_CERT and TLS_KEY, or neither`);
    for (const [key, path] of [['TLS_CERT', certPath], ['TLS_KEY', keyPath]] as const) {
      if (!existsSync(path)) throw new ConfigError(`${key}: no such file: ${path}`);
    }
    return { cert: certPath, key: keyPath, generated: false };
  }
  const dir = join(dataDir, 'tls');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  if (existsSync(cert) && existsSync(key)) return { cert, key, generated: false };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const name = hostname() || 'localhost';
  const pems = await new Promise<{ private: string; cert: string }>((resolve, reject) => {
    selfsigned.generate(
      [{ name: 'commonName', value: name }],
      {
        days: 825,
        keySize: 2048,
        algorithm: 'sha256',
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          {
            name: 'subjectAltName',
            altNames: [
              { type: 2, value: name },
              { type: 2, value: 'localhost' },
              { type: 7, ip: '127.0.0.1' },
              { type: 7, ip: '::1' },
            ],
          },
        ],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
  await writeFile(`${key}.tmp`, pems.private, { mode: 0o600 });
  await writeFile(`${cert}.tmp`, pems.cert, { mode: 0o644 });
  await rename(`${key}.tmp`, key);
  await rename(`${cert}.tmp`, cert);
  return { cert, key, generated: true };
}

/** Certificate and key, checked by building a context once. */
export async function loadTlsOptions(files: TlsFiles): Promise<SecureContextOptions> {
  const [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
  const options: SecureContextOptions = { cert, key, minVersion: 'TLSv1.2' };
  try {
    createSecureContext(options);
    return options;
  } catch (e) {
    throw new ConfigError(`TLS_CERT/TLS_KEY: cannot use ${files.cert} with ${files.key}: ${(e as Error).message}`);
  }
}
