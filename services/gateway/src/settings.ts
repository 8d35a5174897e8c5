import type { SecureContextOptions } from 'node:tls';
import type { AccountBackend } from '@postern/accounts';
import type { LockManager, LoginDelayGate, LoginThrottle } from '@postern/locks';
import type { MailStore } from '@postern/mailstore';
import type { SaslMechanism } from '@postern/pop3-protocol';
import type { Logger, Metrics } from '@postern/telemetry';

export type PlaintextAuthPolicy = 'loopback' | 'always' | 'never';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** What the gateway needs to know; each service maps its config onto this. */
export interface GatewaySettings {
  readonly pop3: ListenAddress | null;
  readonly pop3s: ListenAddress | null;
  /** Certificate for STLS and the implicit-TLS listener; null disables both. */
  readonly tls: SecureContextOptions | null;
  readonly plaintextAuth: PlaintextAuthPolicy;
  /** Name shown in the greeting and the IMPLEMENTATION capability; null hides it. */
  readonly implementation: string | null;
  readonly saslMechanisms: readonly SaslMechanism[];
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  /** New connections from one address per minute (0: no limit). */
  readonly maxConnectionsPerIpPerMinute: number;
  /** Idle limit before login (ms). */
  readonly loginTimeoutMs: number;
  /** Idle limit after login (ms); RFC 1939 asks for at least 10 minutes. */
  readonly idleTimeoutMs: number;
  /** Delay before answering a failed login, grows with each failure on the connection (ms). */
  readonly authFailureDelayMs: number;
  readonly maxAuthFailures: number;
  readonly maxBadCommands: number;
  /** Command line limit in octets including CRLF (RFC 2449: 255). */
  readonly maxLineLength: number;
  /** Limit for AUTH lines and SASL responses (octets). */
  readonly maxSaslLineLength: number;
  /** Seconds between logins to one mailbox (RFC 2449 LOGIN-DELAY): advertised and enforced. */
  readonly loginDelay: number | null;
  readonly expire: number | 'NEVER' | null;
  /** TLS handshake deadline (ms); also the deadline for a PROXY header. */
  readonly tlsHandshakeTimeoutMs: number;
  /**
   * Load balancers allowed to send a HAProxy PROXY header (v1 or v2), as addresses or CIDR
   * networks. A connection from one of them must start with the header; the client address it
   * carries is used for logs and limits. Empty: the PROXY protocol is off.
   */
  readonly proxyTrustedNetworks: readonly string[];
}

export interface GatewayDeps {
  readonly settings: GatewaySettings;
  readonly accounts: AccountBackend;
  readonly store: MailStore;
  readonly locks: LockManager;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Where LOGIN-DELAY is enforced (needed when `settings.loginDelay` is set). */
  readonly loginDelayGate?: LoginDelayGate;
  /** Brute-force protection: failed-login counters per client address and account; none when absent. */
  readonly loginThrottle?: LoginThrottle;
}

export const DEFAULT_GATEWAY_SETTINGS: Omit<GatewaySettings, 'pop3' | 'pop3s' | 'tls'> = {
  plaintextAuth: 'loopback',
  implementation: 'Postern',
  saslMechanisms: ['PLAIN', 'LOGIN'],
  maxConnections: 10_000,
  maxConnectionsPerIp: 50,
  maxConnectionsPerIpPerMinute: 0,
  loginTimeoutMs: 60_000,
  idleTimeoutMs: 600_000,
  authFailureDelayMs: 1_000,
  maxAuthFailures: 3,
  maxBadCommands: 10,
  maxLineLength: 255,
  maxSaslLineLength: 8_192,
  loginDelay: null,
  expire: null,
  tlsHandshakeTimeoutMs: 30_000,
  proxyTrustedNetworks: [],
};
