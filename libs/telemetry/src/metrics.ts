/**
 * Prometheus metrics (prom-client). The only module that imports prom-client; services get a
 * `Metrics` object and call its typed members. No per-user labels: label values are small fixed
 * sets (command names, results, backends, listeners).
 */
import client from 'prom-client';
import { Histogram } from './histogram.js';

export const METRICS_CONTENT_TYPE = client.Registry.PROMETHEUS_CONTENT_TYPE;

const NS = 'postern';

/** Seconds: 100 µs to 30 s, for commands, logins and store operations. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds: a session lasts from milliseconds (an empty poll) to the idle timeout. */
const SESSION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

export type SessionState = 'authorization' | 'transaction';

export interface MetricsOptions {
  /** Node process metrics (event-loop lag, heap, CPU, file descriptors). Default true. */
  readonly processMetrics?: boolean;
  /** Leave out the delivery metrics (a POP3-only worker, whose primary reports delivery). */
  readonly withoutDelivery?: boolean;
  /** METRICS=off: every metric is a no-op, nothing is collected, and `text()` says so. */
  readonly disabled?: boolean;
}

const DISABLED_TEXT = '# metrics disabled (METRICS=off)\n';

/** Stands in for every counter, gauge and histogram when metrics are off. */
const NOOP_METRIC = {
  inc: () => undefined,
  dec: () => undefined,
  set: () => undefined,
  observe: () => undefined,
  reset: () => undefined,
  startTimer: () => () => 0,
  labels: () => NOOP_METRIC,
};

export class Metrics {
  readonly registry = new client.Registry();

  readonly connections = new client.Counter({
    name: `${NS}_connections_total`,
    help: 'POP3 connections, by listener and whether they were accepted or refused (and why).',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  readonly connectionLimit = new client.Gauge({
    name: `${NS}_connection_limit`,
    help: 'Most POP3 connections this process accepts (MAX_CONNECTIONS); summed over workers, the pod total.',
    registers: [this.registry],
  });
  readonly sessionsActive = new client.Gauge({
    name: `${NS}_sessions_active`,
    help: 'POP3 sessions open now, by protocol state.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly sessionDuration = new Histogram({
    name: `${NS}_session_duration_seconds`,
    help: 'POP3 session length, connect to close.',
    buckets: SESSION_BUCKETS,
    registers: [this.registry],
  });
  readonly commandDuration = new Histogram({
    name: `${NS}_command_duration_seconds`,
    help: 'Time to handle one POP3 command, including its reply (and for RETR/TOP the message).',
    labelNames: ['command'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly authAttempts = new client.Counter({
    name: `${NS}_auth_attempts_total`,
    help: 'Login attempts, by account backend, mechanism and result.',
    labelNames: ['backend', 'mechanism', 'result'] as const,
    registers: [this.registry],
  });
  readonly authDuration = new Histogram({
    name: `${NS}_auth_duration_seconds`,
    help: 'Credential verification time, by account backend.',
    labelNames: ['backend'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly credentialCache = new client.Counter({
    name: `${NS}_credential_cache_lookups_total`,
    help: 'Verified-credential cache lookups: hit, negative_hit (a cached failure), shared_hit (answered by the cache shared in Redis), miss (the backend verified).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly sweepRuns = new client.Counter({
    name: `${NS}_sweep_runs_total`,
    help: 'Store sweeper passes (delivery workers, STORE=s3), by result (ok, error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly sweepObjects = new client.Counter({
    name: `${NS}_sweep_objects_total`,
    help: 'Objects handled by the store sweeper: pending_deleted (committed deletions finished), pending_failed (left for the next pass), orphan_deleted.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly authThrottled = new client.Counter({
    name: `${NS}_auth_throttled_total`,
    help: 'Logins refused by the brute-force throttle without verifying, by reason: too many failures from the client address (ip) or for the account (user).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly lockAcquisitions = new client.Counter({
    name: `${NS}_maildrop_lock_acquisitions_total`,
    help: 'Maildrop lock attempts: acquired, conflict (the client got [IN-USE]) or error.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly leaseLosses = new client.Counter({
    name: `${NS}_maildrop_lease_losses_total`,
    help: 'Sessions ended because their maildrop lease was lost.',
    registers: [this.registry],
  });
  readonly messagesRetrieved = new client.Counter({
    name: `${NS}_messages_retrieved_total`,
    help: 'Messages sent whole by RETR.',
    registers: [this.registry],
  });
  readonly retrievedOctets = new client.Counter({
    name: `${NS}_retrieved_octets_total`,
    help: 'Octets of messages sent by RETR (before dot-stuffing).',
    registers: [this.registry],
  });
  readonly messagesDeleted = new client.Counter({
    name: `${NS}_messages_deleted_total`,
    help: 'Messages removed by a committed QUIT.',
    registers: [this.registry],
  });
  readonly storeDuration = new Histogram({
    name: `${NS}_store_operation_duration_seconds`,
    help: 'Mail store operations, by backend and operation (open, read, commit, deliver).',
    labelNames: ['backend', 'operation', 'result'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly backendDuration = new Histogram({
    name: `${NS}_backend_request_duration_seconds`,
    help: 'Requests of the cluster store to its backends: S3 (get, get-range, put, head, delete, list) and Redis round trips (acquire, renew, release, commit, index, ...).',
    labelNames: ['backend', 'operation', 'result'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly tlsHandshakes = new client.Counter({
    name: `${NS}_tls_handshakes_total`,
    help: 'TLS handshakes, on the implicit-TLS listener and by STLS, and whether they succeeded.',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  readonly deliveries = new client.Counter({
    name: `${NS}_delivery_recipients_total`,
    help: 'Delivery recipients, by protocol (lmtp, smtp) and result (accepted, unknown_recipient, relay_denied, over_quota, too_large, no_space, busy, failed).',
    labelNames: ['protocol', 'result'] as const,
    registers: [this.registry],
  });
  readonly deliveryOctets = new client.Counter({
    name: `${NS}_delivery_octets_total`,
    help: 'Octets stored by delivery (canonical size, once per recipient).',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });
  readonly deliveryDuration = new Histogram({
    name: `${NS}_delivery_duration_seconds`,
    help: 'Time to store one message for one recipient.',
    labelNames: ['protocol'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly disabled: boolean;

  constructor(options: MetricsOptions = {}) {
    this.disabled = options.disabled === true;
    if (this.disabled) {
      this.registry.clear();
      for (const [key, value] of Object.entries(this)) {
        if (value instanceof client.Counter || value instanceof client.Gauge || value instanceof Histogram) {
          Object.defineProperty(this, key, { value: NOOP_METRIC });
        }
      }
      return;
    }
    if (options.processMetrics ?? true) {
      client.collectDefaultMetrics({ register: this.registry, prefix: `${NS}_` });
      // prom-client names these gauges with a _total suffix, which promtool rejects.
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
        this.registry.removeSingleMetric(`${NS}_${name}`);
      }
    }
    if (options.withoutDelivery === true) {
      for (const name of deliveryMetricNames(this)) this.registry.removeSingleMetric(name);
    }
  }

  /** The text exposition format. */
  text(): Promise<string> {
    return this.disabled ? Promise.resolve(DISABLED_TEXT) : this.registry.metrics();
  }

  /** Seconds since `start` (from `process.hrtime.bigint()`). */
  static since(start: bigint): number {
    return Number(process.hrtime.bigint() - start) / 1e9;
  }
}

function deliveryMetricNames(m: Metrics): string[] {
  return [m.deliveries, m.deliveryOctets, m.deliveryDuration].map((x) => (x as unknown as { name: string }).name);
}

/** Worker side of a node:cluster setup: answer the primary's requests with these registries. */
export function exposeToClusterPrimary(metrics: Metrics): void {
  client.AggregatorRegistry.setRegistries([metrics.registry]);
  // Constructing one installs prom-client's IPC listener, in workers as in the primary.
  new client.AggregatorRegistry();
}

/**
 * Primary side: the workers' metrics summed, followed by what only the primary records (LMTP
 * delivery). Each metric name appears once, as the exposition format requires.
 */
export function clusterMetricsText(own: Metrics): () => Promise<string> {
  if (own.disabled) return () => own.text();
  const aggregator = new client.AggregatorRegistry();
  const primaryOnly = deliveryMetricNames(own);
  return async () => {
    const parts = [await aggregator.clusterMetrics()];
    for (const name of primaryOnly) parts.push(await own.registry.getSingleMetricAsString(name));
    return `${parts.join('\n')}\n`;
  };
}
