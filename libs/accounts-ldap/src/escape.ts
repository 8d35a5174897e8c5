/**
 * Escaping of values placed into LDAP filters (RFC 4515) and distinguished names (RFC 4514),
 * and the `%u` templates of the configuration.
 */

/**
 * RFC 4515 section 3: `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`.
 * Everything else (including non-ASCII, sent as UTF-8) stays literal, which the RFC allows.
 */
export function escapeFilterValue(value: string): string {
  let out = '';
  for (const c of value) {
    switch (c) {
      case '*':
        out += '\\2a';
        break;
      case '(':
        out += '\\28';
        break;
      case ')':
        out += '\\29';
        break;
      case '\\':
        out += '\\5c';
        break;
      case '\0':
        out += '\\00';
        break;
      default:
        out += c;
    }
  }
  return out;
}

/**
 * RFC 4514 section 2.4: an attribute value inside a DN. `"+,;<>\` and `=` are backslash-escaped,
 * a leading space or `#` and a trailing space too, NUL becomes `\00`.
 */
export function escapeDnValue(value: string): string {
  let out = '';
  const last = value.length - 1;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (c === '\0') out += '\\00';
    else if ('"+,;<>\\='.includes(c)) out += `\\${c}`;
    else if ((i === 0 && (c === ' ' || c === '#')) || (i === last && c === ' ')) out += `\\${c}`;
    else out += c;
  }
  return out;
}

/** Replaces every `%u` with `escape(value)`; `%%` is a literal `%`. */
export function fillTemplate(template: string, value: string, escape: (v: string) => string): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '%') {
      out += c;
      continue;
    }
    const next = template[i + 1];
    if (next === 'u') out += escape(value);
    else if (next === '%') out += '%';
    else throw new RangeError(`unknown placeholder %${next ?? ''} in "${template}" (only %u and %%)`);
    i++;
  }
  return out;
}

/** The attribute compared with `%u` first in a filter template, e.g. `sAMAccountName`. */
export function loginAttributeOf(filterTemplate: string): string | null {
  return /\(\s*([A-Za-z][\w-]*)\s*=\s*%u\s*\)/.exec(filterTemplate)?.[1] ?? null;
}

/** A bind template is a DN (`uid=%u,ou=people,...`) when `%u` is an attribute value; else a UPN or `DOMAIN\user` name. */
export function templateIsDn(template: string): boolean {
  return /^\s*[A-Za-z][\w-]*\s*=/.test(template);
}
