/**
 * LMTP/SMTP replies with their enhanced status codes (RFC 3463), and the reply for each way a
 * delivery can fail. smtp-server picks the enhanced code from the reply code alone; a reply made
 * here carries its own (see `keepOwnStatusCodes`).
 */
import type { SMTPServer } from 'smtp-server';

/** An SMTP reply error: smtp-server sends `responseCode`, the message starts with the enhanced code. */
export type Reply = Error & { readonly responseCode: number };

export function reply(code: number, enhanced: string, text: string): Reply {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}

/** Delivery outcomes as metric labels (`postern_delivery_recipients_total{result}`). */
export type Outcome =
  | 'accepted'
  | 'unknown_recipient'
  | 'relay_denied'
  | 'over_quota'
  | 'too_large'
  | 'no_space'
  | 'busy'
  | 'failed';

export const REPLIES = {
  unknownUser: (address: string) => reply(550, '5.1.1', `<${address}>: User unknown`),
  relayDenied: (address: string) => reply(550, '5.7.1', `<${address}>: Relay access denied`),
  mailboxFull: () => reply(552, '5.2.2', 'Mailbox full'),
  tooBig: () => reply(552, '5.3.4', 'Message too big'),
  noSpace: () => reply(452, '4.3.1', 'Insufficient system storage, try again later'),
  busy: () => reply(451, '4.3.2', 'Too many deliveries in progress, try again later'),
  localError: () => reply(451, '4.3.0', 'Local error in processing, try again later'),
  lookupFailed: () => reply(451, '4.3.0', 'Temporary lookup failure, try again later'),
} as const;

/** True when `code` (an errno name) appears in the error or its chain of causes. */
function hasErrno(error: unknown, code: string): boolean {
  for (let e = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code) return true;
  }
  return false;
}

/**
 * The reply for a failed store call: too big 552 5.3.4, over quota 552 5.2.2 (permanent, as
 * Dovecot answers without quota_full_tempfail), disk full 452 4.3.1, anything else 451 4.3.0.
 */
export function storeFailure(error: unknown): { reply: Reply; outcome: Outcome } {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'too-large') return { reply: REPLIES.tooBig(), outcome: 'too_large' };
  if (code === 'over-quota') return { reply: REPLIES.mailboxFull(), outcome: 'over_quota' };
  if (hasErrno(error, 'ENOSPC')) return { reply: REPLIES.noSpace(), outcome: 'no_space' };
  return { reply: REPLIES.localError(), outcome: 'failed' };
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * Makes the server send a reply whose text starts with an enhanced status code as it is, instead
 * of putting smtp-server's code for the reply code in front (which would make `452 4.3.1 ...`
 * into `452 4.2.2 4.3.1 ...`). Wraps `send` of each connection as it is added.
 */
export function keepOwnStatusCodes(server: SMTPServer): void {
  const connections = server.connections;
  const add = connections.add.bind(connections);
  connections.add = (connection) => {
    const send = connection.send.bind(connection);
    connection.send = (code, data, context) => send(code, data, typeof data === 'string' && ENHANCED.test(data) ? false : context);
    return add(connection);
  };
}
