/**
 * The deployment files, checked without a container engine or a cluster: they parse,
 * every file they mount or copy exists, every EXTJOB_* variable they set is a real
 * option, labels and ports line up, and the generated files (dashboard JSON,
 * PrometheusRule) are exactly what deploy/generate.ts writes.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { dashboardExpressions } from '../../deploy/dashboard.js';
import { FILES, generate, renderPrometheusRule } from '../../deploy/generate.js';
import { OPTIONS } from '../../src/shared/config.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'kubernetes');
const read = (p: string) => readFileSync(p, 'utf8');
const yamlFile = (p: string) => parse(read(p));
const ENV_NAMES = new Set(Object.values(OPTIONS).map((o) => o.env));
const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML and JSON of known shape, checked field by field.
type Obj = Record<string, any>;

describe('generated files', () => {
  it('are exactly what deploy/generate.ts writes (run it after changing the sources)', () => {
    for (const f of generate()) expect(read(f.path), f.path).toBe(f.text);
  });

  it('the PrometheusRule embeds exactly the tested alert rules', () => {
    const rule = yamlFile(FILES.prometheusRule) as Obj;
    expect(rule.kind).toBe('PrometheusRule');
    expect(rule.spec).toEqual(yamlFile(FILES.alerts));
    expect(() => renderPrometheusRule('rules: []')).toThrow(/groups/);
  });

  it('the dashboard is valid JSON with unique panel ids and a target per expression', () => {
    const d = JSON.parse(read(FILES.dashboard)) as Obj;
    const panels = d.panels as Obj[];
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t: Obj) => t.expr));
    expect(exprs).toEqual(dashboardExpressions().map((e) => e.expr));
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type !== 'row') expect(p.datasource.uid, p.title).toBe(`$${'{datasource}'}`);
    }
  });
});

describe('docker', () => {
  const dockerfile = read(join(ROOT, 'Dockerfile'));
  const pkg = JSON.parse(read(join(ROOT, 'package.json'))) as Obj;

  it('is multi-stage on a Node LTS image and runs as a non-root user', () => {
    expect(dockerfile.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/ARG NODE_IMAGE=node:(22|24)[.-]/);
    const users = [...dockerfile.matchAll(/^USER (\S+)/gm)].map((m) => m[1]);
    expect(users.at(-1)).toBeDefined();
    expect(['root', '0']).not.toContain(users.at(-1));
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
  });

  it('copies files that exist and starts the compiled CLI that package.json names', () => {
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm))
      for (const src of m[1]!.split(/\s+/)) expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
    expect(dockerfile).toContain(`ENTRYPOINT ["node", "${pkg.bin.extjob}"]`);
    // The compiled CLI lands where the build config puts it.
    const build = JSON.parse(read(join(ROOT, 'tsconfig.build.json'))) as Obj;
    expect(build.include).toEqual(['src']);
    expect(pkg.bin.extjob).toBe('dist/src/cli/main.js');
  });

  it('compiled, finds the files the package ships beside dist (Lua scripts, the Kafka pom)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'extjob-package-'));
    try {
      const tsc = spawnSync(
        process.execPath,
        [
          join(ROOT, 'node_modules/typescript/bin/tsc'),
          '-p',
          join(ROOT, 'tsconfig.build.json'),
          '--outDir',
          join(dir, 'dist'),
        ],
        { encoding: 'utf8' },
      );
      expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
      // the package's layout: what package.json ships, dist/src compiled above
      for (const f of (pkg.files as string[]).filter((f) => f !== 'dist/src')) {
        mkdirSync(dirname(join(dir, f)), { recursive: true });
        symlinkSync(join(ROOT, f), join(dir, f));
      }
      symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg));
      const probe = `const kafka = await import('./dist/src/cli/local/kafka.js');
        const scripts = await import('./dist/src/broker/scripts.js');
        console.log(kafka.kafkaVersion(), scripts.scriptLibrary().source.includes('apply_many'));`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
        encoding: 'utf8',
        cwd: dir,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+ true$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('.dockerignore keeps what the build copies', () => {
    const ignored = read(join(ROOT, '.dockerignore'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const needed of ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'])
      expect(ignored, needed).not.toContain(needed);
    for (const never of ['node_modules', '.git', '.env']) expect(ignored).toContain(never);
  });

  it('needs only production dependencies at run time', () => {
    const deps = new Set(Object.keys(pkg.dependencies));
    const builtins = new Set(builtinModules);
    const missing: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts'))
          for (const m of read(p).matchAll(/^(?:import|export)\s(?!type\s)[^'"]*?from\s+'([^'.][^']*)'/gm)) {
            const spec = m[1]!;
            const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
            if (!spec.startsWith('node:') && !builtins.has(name) && !deps.has(name))
              missing.push(`${p}: ${spec}`);
          }
      }
    };
    walk(join(ROOT, 'src'));
    expect(missing).toEqual([]);
  });
});

describe('docker compose', () => {
  const compose = yamlFile(join(DEPLOY, 'docker-compose.yml')) as Obj;
  const services = compose.services as Obj;

  it('runs Kafka (KRaft), Redis with AOF, extjob, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(['extjob', 'grafana', 'kafka', 'prometheus', 'redis']);
    expect(services.kafka.image).toMatch(/^apache\/kafka:/);
    expect(services.kafka.environment.KAFKA_PROCESS_ROLES).toBe('broker,controller');
    expect(services.redis.command.join(' ')).toMatch(/--appendonly yes/);
    expect(services.redis.command.join(' ')).toMatch(/--maxmemory-policy noeviction/);
  });

  it('interpolates only VAR, VAR:-default and VAR:?message in braces (compose rejects anything else)', () => {
    const lines = read(join(DEPLOY, 'docker-compose.yml'))
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'));
    for (const line of lines) {
      const rest = line.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?][^}$]*)?\}|\$\$/g, '');
      expect(rest, line).not.toContain('$');
    }
  });

  it('mounts files that exist', () => {
    for (const [name, svc] of Object.entries(services) as [string, Obj][])
      for (const v of (svc.volumes ?? []) as string[]) {
        const src = v.split(':')[0]!;
        if (src.startsWith('.')) expect(existsSync(join(DEPLOY, src)), `${name}: ${v}`).toBe(true);
        else expect(Object.keys(compose.volumes), `${name}: ${v}`).toContain(src);
      }
    expect(existsSync(join(DEPLOY, services.extjob.build.context, services.extjob.build.dockerfile))).toBe(
      true,
    );
  });

  it('sets only real extjob options, and stops later than the shutdown timeout', () => {
    const env = services.extjob.environment as Obj;
    for (const k of Object.keys(env)) expect(ENV_NAMES, k).toContain(k);
    expect(env.EXTJOB_REDIS_URL).toBe('redis://redis:6379');
    expect(env.EXTJOB_KAFKA_BROKERS).toBe(
      services.kafka.environment.KAFKA_ADVERTISED_LISTENERS.split('//')[1],
    );
    expect(Number.parseInt(services.extjob.stop_grace_period, 10)).toBeGreaterThan(
      Number(env.EXTJOB_SHUTDOWN_TIMEOUT_SECONDS) + 3,
    );
  });

  it('Prometheus scrapes extjob as job "extjob" with the alert rules', () => {
    const prom = yamlFile(join(DEPLOY, 'prometheus/prometheus.yml')) as Obj;
    const job = (prom.scrape_configs as Obj[]).find((j) => j.job_name === 'extjob');
    expect(job?.static_configs[0].targets).toEqual(['extjob:8080']);
    const mounted = (services.prometheus.volumes as string[]).map((v) => v.split(':')[1]);
    for (const f of prom.rule_files as string[]) expect(mounted).toContain(f);
  });

  it.runIf(hasPromtool)('the Prometheus configuration passes promtool check config', () => {
    const dir = mkdtempSync(join(tmpdir(), 'extjob-promcfg-'));
    try {
      // The rule file path is the container's; point it at the repository's copy.
      const cfg = read(join(DEPLOY, 'prometheus/prometheus.yml')).replace(
        '/etc/prometheus/alerts.yml',
        FILES.alerts,
      );
      writeFileSync(join(dir, 'prometheus.yml'), cfg);
      const r = spawnSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toContain('SUCCESS');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Grafana is provisioned with the Prometheus datasource the dashboard uses', () => {
    const ds = yamlFile(join(DEPLOY, 'grafana/provisioning/datasources/prometheus.yml')) as Obj;
    const dashboard = JSON.parse(read(FILES.dashboard)) as Obj;
    const dsVar = (dashboard.templating.list as Obj[]).find((v) => v.name === 'datasource');
    expect(ds.datasources[0].uid).toBe(dsVar?.current.value);
    expect(ds.datasources[0].url).toBe('http://prometheus:9090');
    const provider = yamlFile(join(DEPLOY, 'grafana/provisioning/dashboards/extjob.yml')) as Obj;
    const path = provider.providers[0].options.path as string;
    expect((services.grafana.volumes as string[]).some((v) => v.includes(`:${path}/extjob.json`))).toBe(true);
  });
});

describe('kubernetes', () => {
  const kustomization = yamlFile(join(K8S, 'kustomization.yaml')) as Obj;
  const docs = new Map<string, Obj>();
  for (const f of kustomization.resources as string[]) {
    const parsed = parseAllDocuments(read(join(K8S, f)));
    for (const d of parsed) {
      expect(d.errors, f).toEqual([]);
      const o = d.toJS() as Obj;
      docs.set(o.kind, o);
    }
  }
  const deployment = docs.get('Deployment')!;
  const pod = deployment.spec.template.spec as Obj;
  const container = pod.containers[0] as Obj;
  const podLabels = deployment.spec.template.metadata.labels as Obj;
  const matches = (selector: Obj, labels: Obj) =>
    Object.entries(selector).every(([k, v]) => labels[k] === v) && Object.keys(selector).length > 0;

  it('lists every manifest in the kustomization', () => {
    const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...(kustomization.resources as string[])].sort()).toEqual(files.sort());
    expect([...docs.keys()].sort()).toEqual(
      [
        'ConfigMap',
        'Deployment',
        'PodDisruptionBudget',
        'PrometheusRule',
        'Secret',
        'Service',
        'ServiceMonitor',
      ].sort(),
    );
  });

  it('the Deployment has probes on /healthz and /readyz, resources, and runs as non-root', () => {
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.startupProbe.httpGet.path).toBe('/healthz');
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.requests.memory).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(matches(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
  });

  it('sets only real extjob options from the ConfigMap, the Secret and env', () => {
    const configMap = docs.get('ConfigMap')!;
    const secret = docs.get('Secret')!;
    for (const k of Object.keys(configMap.data)) expect(ENV_NAMES, `ConfigMap ${k}`).toContain(k);
    for (const e of container.env as Obj[]) {
      expect(ENV_NAMES, `env ${e.name}`).toContain(e.name);
      const ref = e.valueFrom?.secretKeyRef;
      if (ref) {
        expect(ref.name).toBe(secret.metadata.name);
        expect(Object.keys(secret.stringData)).toContain(ref.key);
      }
    }
    expect(container.envFrom[0].configMapRef.name).toBe(configMap.metadata.name);
    // The tokens file the config names is the mounted Secret key.
    const tokensFile = configMap.data.EXTJOB_API_TOKENS_FILE as string;
    const mount = (container.volumeMounts as Obj[]).find((m) => tokensFile.startsWith(`${m.mountPath}/`))!;
    const volume = (pod.volumes as Obj[]).find((v) => v.name === mount.name)!;
    expect(volume.secret.secretName).toBe(secret.metadata.name);
    expect(volume.secret.items.map((i: Obj) => i.path)).toContain(
      tokensFile.slice(mount.mountPath.length + 1),
    );
    expect(Object.keys(secret.stringData)).toContain(volume.secret.items[0].key);
  });

  it('the placeholder token refuses to start rather than grant access', async () => {
    const { loadConfig } = await import('../../src/shared/config.js');
    const dir = mkdtempSync(join(tmpdir(), 'extjob-tokens-'));
    try {
      writeFileSync(join(dir, 'api-tokens'), docs.get('Secret')!.stringData['api-tokens']);
      expect(() => loadConfig({ EXTJOB_API_TOKENS_FILE: join(dir, 'api-tokens') })).toThrow(
        /EXTJOB_API_TOKENS_FILE/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives the process longer than its shutdown timeout to stop', () => {
    const timeout = Number(docs.get('ConfigMap')!.data.EXTJOB_SHUTDOWN_TIMEOUT_SECONDS);
    const preStop = Number(container.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
    // The CLI exits at most 3 s after a shutdown that ran out of time.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(timeout + preStop + 3);
  });

  it('Service, ServiceMonitor and PodDisruptionBudget select the pods and the http port', () => {
    const service = docs.get('Service')!;
    const monitor = docs.get('ServiceMonitor')!;
    const pdb = docs.get('PodDisruptionBudget')!;
    expect(matches(service.spec.selector, podLabels)).toBe(true);
    expect(matches(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(matches(monitor.spec.selector.matchLabels, service.metadata.labels)).toBe(true);
    const port = (container.ports as Obj[]).find((p) => p.name === 'http')!;
    expect(service.spec.ports[0].targetPort).toBe(port.name);
    expect(monitor.spec.endpoints[0].port).toBe(service.spec.ports[0].name);
    expect(monitor.spec.endpoints[0].path).toBe('/metrics');
    // The alerts select up{job="extjob"}: the job label of ServiceMonitor targets is the Service name.
    expect(service.metadata.name).toBe('extjob');
    expect(pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
  });
});
