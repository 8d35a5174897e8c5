/** The POP3 command union (RFC 1939, 2449, 2595, 5034) and its parser. */
export type Command =
  | { readonly name: 'USER'; readonly user: string }
  | { readonly name: 'PASS'; readonly password: string }
  | { readonly name: 'APOP'; readonly user: string; readonly digest: string }
  | { readonly name: 'AUTH'; readonly mechanism: string | null; readonly initialResponse: string | null }
  | { readonly name: 'STLS' }
  | { readonly name: 'CAPA' }
  | { readonly name: 'STAT' }
  | { readonly name: 'LIST'; readonly msg: string | null }
  | { readonly name: 'UIDL'; readonly msg: string | null }
  | { readonly name: 'RETR'; readonly msg: string }
  | { readonly name: 'TOP'; readonly msg: string; readonly lines: string }
  | { readonly name: 'DELE'; readonly msg: string }
  | { readonly name: 'NOOP' }
  | { readonly name: 'RSET' }
  | { readonly name: 'QUIT' };

export type CommandName = Command['name'];

export type ParseResult =
  | { readonly ok: true; readonly command: Command }
  | { readonly ok: false; readonly error: 'unknown' | 'syntax'; readonly keyword: string };

/** Number of arguments each keyword takes: [min, max]. PASS takes the rest of the line. */
const ARITY: Record<CommandName, readonly [number, number]> = {
  USER: [1, 1],
  PASS: [1, 1],
  APOP: [2, 2],
  AUTH: [0, 2],
  STLS: [0, 0],
  CAPA: [0, 0],
  STAT: [0, 0],
  LIST: [0, 1],
  UIDL: [0, 1],
  RETR: [1, 1],
  TOP: [2, 2],
  DELE: [1, 1],
  NOOP: [0, 0],
  RSET: [0, 0],
  QUIT: [0, 0],
};

function isCommandName(keyword: string): keyword is CommandName {
  return Object.hasOwn(ARITY, keyword);
}

export function parseCommand(line: string): ParseResult {
  const space = line.indexOf(' ');
  const keyword = (space === -1 ? line : line.slice(0, space)).toUpperCase();
  if (!isCommandName(keyword)) return { ok: false, error: 'unknown', keyword: keyword.slice(0, 8) };
  const rest = space === -1 ? '' : line.slice(space + 1);
  if (keyword === 'PASS') {
    // The password is the rest of the line; it may contain spaces (RFC 1939 section 7).
    if (rest.length === 0) return { ok: false, error: 'syntax', keyword };
    return { ok: true, command: { name: 'PASS', password: rest } };
  }
  const args = rest.length === 0 ? [] : rest.split(' ').filter((a) => a.length > 0);
  const [min, max] = ARITY[keyword];
  if (args.length < min || args.length > max) return { ok: false, error: 'syntax', keyword };
  const a0 = args[0] ?? null;
  const a1 = args[1] ?? null;
  switch (keyword) {
    case 'USER':
      return { ok: true, command: { name: 'USER', user: a0 as string } };
    case 'APOP':
      return { ok: true, command: { name: 'APOP', user: a0 as string, digest: a1 as string } };
    case 'AUTH':
      return { ok: true, command: { name: 'AUTH', mechanism: a0 === null ? null : a0.toUpperCase(), initialResponse: a1 } };
    case 'LIST':
    case 'UIDL':
      return { ok: true, command: { name: keyword, msg: a0 } };
    case 'RETR':
    case 'DELE':
      return { ok: true, command: { name: keyword, msg: a0 as string } };
    case 'TOP':
      return { ok: true, command: { name: 'TOP', msg: a0 as string, lines: a1 as string } };
    default:
      return { ok: true, command: { name: keyword } as Command };
  }
}

/** Digits only, no sign, no leading noise; returns NaN for anything else. */
export function parseDecimal(text: string): number {
  if (text.length === 0 || text.length > 20) return Number.NaN;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return Number.NaN;
  }
  return Number(text);
}
