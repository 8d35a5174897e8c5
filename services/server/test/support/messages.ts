/**
 * The messages the end-to-end tests deliver over LMTP and read back, with what RETR must return.
 * Every message carries an `X-Test-Id` header so a client's output can be matched to it.
 */
import { lmtpSend } from './lmtp-client.js';

export interface TestMessage {
  readonly id: string;
  /** Bytes handed to LMTP (before SMTP dot-stuffing). */
  readonly delivered: Buffer;
  /** What RETR returns un-stuffed: the canonical form (CRLF line ends, a final CRLF). */
  readonly canonical: Buffer;
}

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

function headers(id: string, subject: string, extra: string[] = []): string {
  return [
    'Return-Path: <sender@example.com>',
    'From: Sender <sender@example.com>',
    'To: Recipient <recipient@example.com>',
    `Subject: ${subject}`,
    'Date: Mon, 02 Jun 2025 10:00:00 +0000',
    `Message-ID: <${id}@test.example>`,
    `X-Test-Id: ${id}`,
    ...extra,
  ].join('\r\n');
}

function message(id: string, delivered: Buffer, canonical: Buffer = delivered): TestMessage {
  return { id, delivered, canonical };
}

/** Lines beginning with dots, and lone `.` lines, which both LMTP and POP3 must stuff. */
export function dotsMessage(): TestMessage {
  const body = ['.', 'first line follows a lone dot', '..', '.foo', '...three', '. space after dot', '.', 'x.', 'end'];
  return message('dots', latin1(`${headers('dots', 'dots')}\r\n\r\n${body.join('\r\n')}\r\n`));
}

/** The last body line is a lone `.`: the message ends in CRLF `.` CRLF before stuffing. */
export function dotLastMessage(): TestMessage {
  return message('dot-last', latin1(`${headers('dot-last', 'ends with a dot line')}\r\n\r\nbody\r\n.\r\n`));
}

/** UTF-8 text, latin1 bytes that are not UTF-8, and every byte from 0x80 to 0xFF. */
export function eightBitMessage(): TestMessage {
  const all = Buffer.alloc(128);
  for (let i = 0; i < 128; i++) all[i] = 0x80 + i;
  const parts = [
    latin1(`${headers('8bit', 'eight bit', ['MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'])}\r\n\r\n`),
    Buffer.from('UTF-8: Grüße aus Köln, 日本語のテキスト, emoji 😀\r\n', 'utf8'),
    latin1('latin1: caf\u00e9 na\u00efve \u00fcber \u00ff\u00fe\r\n'),
    latin1('tab\there\r\n'),
    all,
    latin1('\r\n'),
    Buffer.from('.Ünïcödé line starting with a dot\r\n', 'utf8'),
  ];
  return message('8bit', Buffer.concat(parts));
}

/** Lines of exactly 990 characters (under the 998 limit of RFC 5322), one starting with a dot. */
export function longLinesMessage(): TestMessage {
  const line = (c: string, lead = ''): string => lead + c.repeat(990 - lead.length);
  const body = [line('a'), line('b'), line('c', '.'), line('d'), 'short'];
  for (const l of body.slice(0, 4)) if (l.length !== 990) throw new Error('long line is not 990 characters');
  return message('long-lines', latin1(`${headers('long-lines', 'long lines')}\r\n\r\n${body.join('\r\n')}\r\n`));
}

/** No line end after the last line: the canonical form (what RETR returns) adds the final CRLF. */
export function noFinalCrlfMessage(): TestMessage {
  const text = `${headers('no-final-crlf', 'no final CRLF')}\r\n\r\nthe last line has no line end`;
  return message('no-final-crlf', latin1(text), latin1(`${text}\r\n`));
}

/** Headers, the blank line, and nothing after it. */
export function emptyBodyMessage(): TestMessage {
  return message('empty-body', latin1(`${headers('empty-body', 'empty body')}\r\n\r\n`));
}

/** Exactly 5 MiB, CRLF lines of varying length, with dot-led lines sprinkled through. */
export function bigMessage(size = 5 * 1024 * 1024): TestMessage {
  const head = latin1(`${headers('big', 'five megabytes')}\r\n\r\n`);
  const chunks: Buffer[] = [head];
  let total = head.length;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let n = 0; ; n++) {
    let text = `${n % 97 === 0 ? '.' : n % 101 === 0 ? '..' : ''}${n}:`;
    const width = 20 + (n % 57);
    for (let i = 0; text.length < width; i++) text += alphabet[(n * 7 + i) % alphabet.length];
    let line = latin1(`${text}\r\n`);
    const left = size - total;
    if (left <= line.length + 40) {
      // The last line fills the message to the exact size.
      line = latin1(`${'z'.repeat(left - 2)}\r\n`);
      chunks.push(line);
      total += line.length;
      break;
    }
    chunks.push(line);
    total += line.length;
  }
  const delivered = Buffer.concat(chunks);
  if (delivered.length !== size) throw new Error(`big message is ${delivered.length} octets, wanted ${size}`);
  return message('big', delivered);
}

/** The full set the client tests deliver, in delivery order (message n is the n-th here). */
export function corpus(): TestMessage[] {
  return [
    dotsMessage(),
    eightBitMessage(),
    longLinesMessage(),
    noFinalCrlfMessage(),
    emptyBodyMessage(),
    dotLastMessage(),
    bigMessage(),
  ];
}

/** A small message with the given id and body text. */
export function simpleMessage(id: string, body = `body of ${id}`): TestMessage {
  return message(id, latin1(`${headers(id, `message ${id}`)}\r\n\r\n${body}\r\n`));
}

/** The LMTP recipient address of a local user. */
export function address(user: string): string {
  return `${user}@example.com`;
}

/** Delivers each message over LMTP in order to the users, failing unless every recipient got a 250. */
export async function deliverAll(lmtpPort: number, users: readonly string[], messages: readonly TestMessage[]): Promise<void> {
  const recipients = users.map(address);
  for (const m of messages) {
    const result = await lmtpSend(lmtpPort, 'sender@example.com', recipients, m.delivered);
    const codes = [...result.rcpt, ...result.data].map((r) => r.code);
    if (result.data.length !== recipients.length || codes.some((c) => c !== 250)) {
      throw new Error(`delivery of ${m.id} failed: ${JSON.stringify(result)}`);
    }
  }
}

/** CRLF -> LF, as clients that write to local files do. */
export function toLf(bytes: Buffer): Buffer {
  return latin1(bytes.toString('latin1').replaceAll('\r\n', '\n'));
}

/** The `X-Test-Id` of a message in any line-end form, or null. */
export function testIdOf(bytes: Buffer): string | null {
  const m = /^X-Test-Id: (\S+)\r?$/m.exec(bytes.toString('latin1'));
  return m ? (m[1] as string) : null;
}

/**
 * Splits `actual` into the header fields a client put in front of the original and the rest.
 * Fails unless the rest equals `expected` byte for byte and every added field's name is allowed.
 */
export function stripAddedHeaders(actual: Buffer, expected: Buffer, allowed: readonly string[]): { added: string[]; rest: Buffer } {
  const text = actual.toString('latin1');
  const want = expected.toString('latin1');
  const added: string[] = [];
  let offset = 0;
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  while (!text.startsWith(want, offset) || text.length - offset !== want.length) {
    // Take one header field (with its continuation lines) off the front.
    let end = text.indexOf(eol, offset);
    while (end !== -1 && (text[end + eol.length] === ' ' || text[end + eol.length] === '\t')) end = text.indexOf(eol, end + eol.length);
    if (end === -1 || end === offset) break;
    const field = text.slice(offset, end);
    const name = field.slice(0, field.indexOf(':'));
    if (!allowed.some((a) => a.toLowerCase() === name.toLowerCase())) break;
    added.push(field);
    offset = end + eol.length;
  }
  return { added, rest: latin1(text.slice(offset)) };
}
