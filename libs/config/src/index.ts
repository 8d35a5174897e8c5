/**
 * Configuration: a YAML file (CONFIG_FILE) overridden by environment variables, checked
 * against a zod schema at start-up. Every error names the key. The result is frozen.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export { z };

export class ConfigError extends Error {
  readonly code = 'config';
  readonly temporary = false;
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** `host:port`, `[v6]:port`, or empty / `off` to disable the listener. */
export const listenAddress = z.string().transform((text, ctx): ListenAddress | null => {
  const value = text.trim();
  if (value === '' || value === 'off') return null;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port < 0 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected host:port (or "off"), got "${value}"` });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2]) as string, port };
});

/** Whole number from a string or a YAML number. */
export const integer = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.union([z.number(), z.string().trim().regex(/^-?\d+$/, 'expected a whole number')]).transform(Number).pipe(z.number().int().min(min).max(max));

export const boolean = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'])])
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes' || v === 'on');

/** Comma-separated list from a string, or a YAML list. */
export const list = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s.length > 0));

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** YAML file; defaults to env CONFIG_FILE. */
  readonly file?: string | undefined;
}

/** Raw key/value input: the YAML file's top-level keys (upper-cased) overridden by env. */
export function gatherInput(keys: readonly string[], options: LoadOptions = {}): Record<string, unknown> {
  const env = options.env ?? process.env;
  const file = options.file ?? env.CONFIG_FILE;
  const input: Record<string, unknown> = {};
  if (file) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError(`CONFIG_FILE: cannot read ${file}: ${(e as Error).message}`);
    }
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`CONFIG_FILE: ${file} must hold a mapping of keys to values`);
      for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
        const key = k.toUpperCase();
        if (!keys.includes(key)) throw new ConfigError(`${k}: unknown key in ${file}`);
        input[key] = v;
      }
    }
  }
  for (const key of keys) {
    const v = env[key];
    if (v !== undefined) input[key] = v;
  }
  return input;
}

/** Validate against `schema` (keys are the public setting names); throws ConfigError naming the key. */
export function loadConfig<S extends z.ZodObject>(schema: S, options: LoadOptions = {}): Readonly<z.output<S>> {
  const input = gatherInput(Object.keys(schema.shape), options);
  const result = schema.safeParse(input);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = issue.path.length > 0 ? issue.path.join('.') : '(config)';
      const given = issue.path.length > 0 ? input[String(issue.path[0])] : undefined;
      const secret = /PASSWORD|SECRET|KEY$/.test(key);
      const shown = given === undefined || secret ? '' : ` (given: ${JSON.stringify(String(given))})`;
      return `${key}: ${issue.message}${shown}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return Object.freeze(result.data);
}
