// The Helm chart (helm/postern): `helm lint`, `helm template` with the default values (single
// node) and with the cluster values file, then what the rendered objects must say: the
// Deployments, env names the server's schema knows, a configuration the server accepts, probes on
// the admin port, a grace period longer than the drain, secrets by reference only, and the
// chart's own refusal of settings the server would refuse.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { ManagedProcess, freePort, pollUntil, startRedis, startS3, type RedisServer, type S3Server } from '@postern/testkit';
import { parseAllDocuments } from 'yaml';
import { loadServerConfig, serverSchema } from '../src/config.js';
import { Pop3Client } from './support/pop3-client.js';
import { sharedTls } from './support/tls.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHART = join(ROOT, 'helm/postern');
const CLUSTER_VALUES = join(CHART, 'ci/cluster-values.yaml');

/** helm from PATH or where `go install` puts it (infra/bin/install-test-deps.sh installs it). */
function findHelm(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), process.env.GOBIN, process.env.GOPATH && join(process.env.GOPATH, 'bin'), join(homedir(), 'go/bin'), '/usr/local/bin'];
  for (const d of dirs) if (d && existsSync(join(d, 'helm'))) return join(d, 'helm');
  throw new Error('helm is required but not installed (go install helm.sh/helm/v3/cmd/helm@v3.19.0; npm test installs it)');
}
const HELM = findHelm();

function helm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(HELM, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: join(ROOT, 'node_modules/.cache/helm'), HELM_CONFIG_HOME: join(ROOT, 'node_modules/.cache/helm-config') } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface K8sObject {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}

function render(...args: string[]): K8sObject[] {
  const r = helm('template', 'mail', CHART, ...args);
  assert.equal(r.status, 0, `helm template failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function renderFails(...args: string[]): string {
  const r = helm('template', 'mail', CHART, ...args);
  assert.notEqual(r.status, 0, `helm template should have failed with ${args.join(' ')}`);
  return r.stderr;
}

const deployments = (objs: K8sObject[]) => objs.filter((o) => o.kind === 'Deployment');
const container = (d: K8sObject) => d.spec.template.spec.containers[0];

/** A container's env as the process sees it; a Secret reference stands for a plausible secret. */
function envOf(d: K8sObject): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container(d).env as EnvVar[]) {
    if (e.valueFrom?.secretKeyRef) env[e.name] = e.name === 'REDIS_URL' ? 'redis://:pw@redis:6379' : 'from-a-secret-'.padEnd(40, 'x');
    else env[e.name] = e.value ?? '';
  }
  return env;
}

function checkContainer(d: K8sObject): void {
  const c = container(d);
  const pod = d.spec.template.spec;
  const names = (c.env as EnvVar[]).map((e) => e.name);
  assert.equal(new Set(names).size, names.length, `${d.metadata.name}: no env name twice`);
  for (const name of names) {
    assert.ok(name in serverSchema.shape || name.startsWith('AWS_'), `${d.metadata.name}: env ${name} is not a server setting`);
  }
  // The server accepts the rendered configuration (as it would at start).
  const config = loadServerConfig({ env: envOf(d) });
  const admin = c.ports.find((p: { name: string }) => p.name === 'admin');
  assert.equal(config.ADMIN_LISTEN?.port, admin.containerPort, 'ADMIN_LISTEN is the admin container port');
  assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });
  assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
  const preStop = Number(c.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
  assert.ok(pod.terminationGracePeriodSeconds * 1000 > config.DRAIN_TIMEOUT_MS + preStop * 1000, `${d.metadata.name}: grace period ${pod.terminationGracePeriodSeconds} s must outlast preStop ${preStop} s + drain ${config.DRAIN_TIMEOUT_MS} ms`);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  const dataMount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === config.DATA_DIR);
  assert.ok(dataMount, 'DATA_DIR is a mounted volume (the root file system is read-only)');
  assert.equal(c.command.join(' '), 'node services/server/dist/main.js');
}

describe('helm chart', () => {
  test('helm lint passes with the default and the cluster values', () => {
    for (const args of [[CHART], [CHART, '-f', CLUSTER_VALUES]]) {
      const r = helm('lint', '--strict', ...args);
      assert.equal(r.status, 0, `helm lint ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
      // helm lint only logs a template's fail(); none may fire.
      assert.doesNotMatch(r.stdout + r.stderr, /Fail:|\[(ERROR|WARNING)\]/);
    }
  });

  test('default values: one single node on a volume, Recreate, no cluster objects', () => {
    const objs = render();
    const deps = deployments(objs);
    assert.deepEqual(deps.map((d) => d.metadata.name), ['mail-postern']);
    const [node] = deps as [K8sObject];
    assert.equal(node.spec.replicas, 1);
    assert.equal(node.spec.strategy.type, 'Recreate');
    assert.equal(container(node).args, undefined, 'main.js without a mode runs the whole node');
    checkContainer(node);
    assert.equal(envOf(node).STORE, 'maildir');
    assert.ok(objs.some((o) => o.kind === 'PersistentVolumeClaim'));
    assert.ok(!objs.some((o) => ['PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ServiceMonitor'].includes(o.kind)));
  });

  test('cluster values: gateway and delivery Deployments, Services, PDBs, HPA, monitoring', () => {
    const objs = render('-f', CLUSTER_VALUES);
    const deps = deployments(objs);
    assert.deepEqual(deps.map((d) => d.metadata.name).sort(), ['mail-postern-delivery', 'mail-postern-gateway']);
    for (const d of deps) {
      checkContainer(d);
      const role = d.metadata.name.endsWith('gateway') ? 'gateway' : 'delivery';
      assert.deepEqual(container(d).args, [role]);
      assert.equal(d.spec.strategy.rollingUpdate.maxUnavailable, 0);
      assert.ok(d.spec.template.spec.affinity.podAntiAffinity, `${role}: anti-affinity by default`);
      const env = envOf(d);
      assert.equal(env.STORE, 's3');
      assert.equal(env.S3_BUCKET, 'postern-mail');
      assert.equal(env.AUTH, 'ldap,passwd-file', 'a YAML list becomes a comma-separated value');
      assert.equal(env.QUOTA_MAX_OCTETS, '1073741824', 'large numbers are not rendered in exponent form');
      assert.equal(env.PASSWD_FILE, '/etc/postern/passwd/passwd');
      assert.equal(env.TLS_CERT, '/etc/postern/tls/tls.crt');
      const config = loadServerConfig({ env: envOf(d) });
      assert.deepEqual(config.REDIS_SENTINELS.length, 3);
      assert.equal(config.POP3_LISTEN === null, role === 'delivery', `${role}: POP3 only on gateways`);
      assert.equal(config.LMTP_LISTEN === null, role === 'gateway', `${role}: LMTP only on delivery workers`);
      // Secrets by reference only: no secret value in the manifest.
      const vars = container(d).env as EnvVar[];
      for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'REDIS_PASSWORD', 'LDAP_BIND_PASSWORD', 'CREDENTIAL_CACHE_SECRET']) {
        const v = vars.find((e) => e.name === name);
        assert.ok(v?.valueFrom?.secretKeyRef, `${role}: ${name} comes from a Secret`);
        assert.equal(v.value, undefined);
      }
      const volumes = d.spec.template.spec.volumes as { name: string; secret?: { secretName: string } }[];
      assert.equal(volumes.find((v) => v.name === 'tls')?.secret?.secretName, 'postern-tls');
      assert.equal(volumes.find((v) => v.name === 'passwd')?.secret?.secretName, 'postern-passwd');
    }
    const gateway = deps.find((d) => d.metadata.name.endsWith('gateway')) as K8sObject;
    assert.equal(gateway.spec.replicas, undefined, 'the HPA owns the gateway replica count');
    assert.equal(envOf(gateway).DRAIN_TIMEOUT_MS, '60000');
    assert.ok(gateway.spec.template.spec.terminationGracePeriodSeconds > 65);

    const svc = (name: string) => objs.find((o) => o.kind === 'Service' && o.metadata.name === name) as K8sObject;
    assert.deepEqual(svc('mail-postern-gateway').spec.ports.map((p: { port: number; targetPort: string }) => [p.port, p.targetPort]), [[110, 'pop3'], [995, 'pop3s']]);
    assert.equal(svc('mail-postern-gateway').spec.type, 'LoadBalancer');
    assert.equal(svc('mail-postern-delivery').spec.type, 'ClusterIP');
    assert.deepEqual(svc('mail-postern-delivery').spec.ports.map((p: { name: string }) => p.name), ['lmtp', 'smtp']);
    assert.equal(svc('mail-postern-admin').spec.ports[0].targetPort, 'admin');
    assert.equal(objs.filter((o) => o.kind === 'PodDisruptionBudget').length, 2);
    assert.equal(objs.filter((o) => o.kind === 'HorizontalPodAutoscaler').length, 1);
    assert.equal(objs.find((o) => o.kind === 'ServiceMonitor')?.spec.endpoints[0].port, 'admin');

    // The alerting rules and the dashboard are the ones in infra/ (files/ links to them).
    const rules = objs.find((o) => o.kind === 'PrometheusRule') as K8sObject;
    const alerts = parseAllDocuments(readFileSync(join(ROOT, 'infra/prometheus/alerts.yml'), 'utf8'))[0]?.toJS() as { groups: unknown };
    assert.deepEqual(rules.spec.groups, alerts.groups);
    const dashboard = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('dashboard')) as K8sObject;
    assert.equal(dashboard.metadata.labels?.grafana_dashboard, '1');
    assert.deepEqual(JSON.parse(dashboard.data?.['postern.json'] ?? ''), JSON.parse(readFileSync(join(ROOT, 'infra/grafana/postern.json'), 'utf8')));
  });

  test('rendering refuses what the server would refuse, naming the value', () => {
    const cluster = ['--set', 'mode=cluster', '--set', 'passwdFile.existingSecret=pw'];
    assert.match(renderFails(...cluster, '--set', 'config.REDIS_URL=redis://redis:6379'), /config\.S3_BUCKET: required when STORE=s3/);
    assert.match(renderFails(...cluster, '--set', 'config.S3_BUCKET=mail'), /config\.REDIS_URL: STORE=s3 needs Redis/);
    assert.match(renderFails(...cluster, '--set', 'config.S3_BUCKET=mail', '--set', 'config.REDIS_URL=redis://r:6379', '--set', 'config.REDIS_CLUSTER_NODES=r:7000'), /set only one of REDIS_URL/);
    assert.match(renderFails(...cluster, '--set', 'config.S3_BUCKET=mail', '--set', 'config.REDIS_SENTINELS=s:26379'), /REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS/);
    assert.match(renderFails('--set', 'mode=cluster', '--set', 'config.S3_BUCKET=mail', '--set', 'config.REDIS_URL=redis://r:6379'), /AUTH includes passwd-file .*passwdFile\.existingSecret/);
    assert.match(renderFails('--set', 'mode=cluster', '--set', 'config.STORE=maildir'), /mode cluster needs config\.STORE=s3/);
    // Secrets never inline.
    assert.match(renderFails('--set', 'config.AWS_SECRET_ACCESS_KEY=abc'), /config\.AWS_SECRET_ACCESS_KEY is a secret: .*secrets\.s3\.existingSecret/);
    assert.match(renderFails('--set', 'config.REDIS_URL=redis://:pw@r:6379'), /REDIS_URL carries a password/);
    assert.match(renderFails('--set', 'config.ADMIN_LISTEN=0.0.0.0:1'), /config\.ADMIN_LISTEN is set by the chart/);
    assert.match(renderFails('--set', 'terminationGracePeriodSeconds=30'), /terminationGracePeriodSeconds \(30\) must exceed .*\(35\)/);
    // The single node with the cluster store passes the same checks.
    assert.match(renderFails('--set', 'config.STORE=s3', '--set', 'config.REDIS_URL=redis://r:6379'), /config\.S3_BUCKET: required when STORE=s3/);
  });
});

describe('the rendered cluster environment runs', () => {
  let redis: RedisServer;
  let s3: S3Server;
  let dir: string;
  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    dir = await mkdtemp(join(tmpdir(), 'postern-helm-'));
  });
  after(async () => {
    await Promise.all([redis?.stop(), s3?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('gateway and delivery started with the chart\'s env get ready, serve, and drain on SIGTERM', { timeout: 120_000 }, async () => {
    const objs = render(
      ...['--set', 'mode=cluster', '--set', 'passwdFile.existingSecret=pw', '--set', 'tls.existingSecret=tls', '--set', 'secrets.s3.existingSecret=s3'],
      ...['--set-string', `config.S3_BUCKET=${s3.bucket},config.S3_ENDPOINT=${s3.endpoint},config.S3_FORCE_PATH_STYLE=true,config.REDIS_URL=${redis.url}`],
      ...['--set-string', 'config.LOG_LEVEL=info,config.AUTH_FAILURE_DELAY_MS=0'],
    );
    const tls = await sharedTls();
    await writeFile(join(dir, 'passwd'), 'alice:{PLAIN}alice-secret\n', { mode: 0o600 });
    const procs: ManagedProcess[] = [];
    try {
      for (const d of deployments(objs)) {
        const role = container(d).args[0] as string;
        // The pod's paths and ports, moved to this machine: a private directory, loopback ports.
        const env = envOf(d);
        Object.assign(env, { DATA_DIR: join(dir, role), PASSWD_FILE: join(dir, 'passwd'), TLS_CERT: tls.cert, TLS_KEY: tls.key });
        env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
        env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
        for (const [k, v] of Object.entries(env)) if (k.endsWith('_LISTEN') && v.startsWith('0.0.0.0:')) env[k] = `127.0.0.1:${await freePort()}`;
        const adminPort = Number(env.ADMIN_LISTEN?.split(':')[1]);
        const proc = await ManagedProcess.start({
          name: `helm-${role}`,
          program: process.execPath,
          args: ['--conditions=development', '--import', 'tsx', join(ROOT, 'services/server/src/main.ts'), role],
          cwd: ROOT,
          env,
          port: adminPort,
          readyTimeoutMs: 60_000,
        });
        procs.push(proc);
        await pollUntil(`${role} /readyz`, 30_000, async () => ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200 ? true : undefined));
        if (role === 'gateway') {
          const pop3 = await Pop3Client.connect(Number(env.POP3_LISTEN?.split(':')[1]));
          assert.match(pop3.greeting, /^\+OK/);
          await pop3.login('alice', 'alice-secret');
          assert.match(await pop3.command('STAT'), /^\+OK 0 0/);
          await pop3.quit();
          // SIGTERM alone drains and ends the process (no preStop hook needed for that).
          const stopped = proc.waitForLine((l) => l.includes('"stopped"'), 30_000);
          proc.signal('SIGTERM');
          await stopped;
        }
      }
    } finally {
      for (const p of procs) await p.stop();
    }
  });
});
