// Types of pop3-protocol.js (for the TypeScript tests that import it).

export declare const MAX_STATUS_LINE: number;

export declare class Pop3ProtocolError extends Error {
  constructor(stage: string, message: string, reply?: Pop3Reply | null);
  readonly stage: string;
  readonly reply: Pop3Reply | null;
}

export interface Pop3Status {
  readonly ok: boolean;
  /** RFC 2449 response code without brackets, or null. */
  readonly code: string | null;
  readonly text: string;
}

export interface Pop3Reply extends Pop3Status {
  /** Decoded body octets of a multi-line +OK reply (CRLF line ends, unstuffed, no terminator). */
  octets: number;
  body: Uint8Array | null;
}

export interface Pop3Transport {
  write(text: string): void | Promise<void>;
  /** The next bytes from the server, or null once it closed. */
  read(): Promise<Uint8Array | null>;
}

export declare function latin1(bytes: Uint8Array, start?: number, end?: number): string;
export declare function isMultiline(command: string): boolean;
export declare function parseStatusLine(line: string): Pop3Status;

export declare class BodyDecoder {
  constructor(keep: boolean);
  readonly octets: number;
  readonly done: boolean;
  push(bytes: Uint8Array, offset?: number): number;
  body(): Uint8Array | null;
}

export declare class ReplyReader {
  expect(multiline: boolean, keepBody: boolean): void;
  readonly awaiting: number;
  push(bytes: Uint8Array): Pop3Reply[];
}

export declare class Pop3Conversation {
  constructor(transport: Pop3Transport);
  greeting(): Promise<Pop3Reply>;
  command(line: string, options?: { keepBody?: boolean }): Promise<Pop3Reply>;
  waitClosed(): Promise<void>;
}

export declare function parseStat(text: string): { count: number; size: number };
export declare function parseList(body: Uint8Array | null): { msg: number; size: number }[];
export declare function parseUidl(body: Uint8Array | null): { msg: number; uid: string }[];
export declare function parseAccounts(text: string): { user: string; password: string }[];

export interface SessionOptions {
  user: string;
  password: string;
  capa?: boolean;
  retr?: 'all' | 'none' | number;
  dele?: boolean;
  keepBodies?: boolean;
  now?: () => number;
}

export interface SessionResult {
  greeting: string;
  capabilities: string[] | null;
  stat: { count: number; size: number };
  list: { msg: number; size: number }[];
  uidl: { msg: number; uid: string }[];
  retrieved: { msg: number; octets: number; body: Uint8Array | null }[];
  octets: number;
  loginMs: number;
  sessionMs: number;
}

export declare function runSession(transport: Pop3Transport, options: SessionOptions): Promise<SessionResult>;
