/**
 * The recipes in deploy/examples, run as written against a running extjob: the CI
 * scripts run in bash with `extjob` on PATH, the Argo CD notification templates are
 * rendered and posted like the notifications controller would, the PostSync hook's
 * container arguments are run with Kubernetes' $(VAR) expansion.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parse } from 'yaml';
import { kafkaBrokers, waitFor } from '../helpers/index.js';
import { ADMIN_TOKEN, cli, type Stack, startStack } from './support.js';

const ROOT = resolve(import.meta.dirname, '../..');
const EXAMPLES = join(ROOT, 'deploy/examples');
const read = (p: string) => parse(readFileSync(join(EXAMPLES, p), 'utf8'));

/** A directory with an `extjob` executable that runs this checkout's CLI. */
function shimDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'extjob-bin-'));
  const bin = join(dir, 'extjob');
  writeFileSync(
    bin,
    `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(ROOT, 'src/cli/main.ts')}" "$@"\n`,
  );
  chmodSync(bin, 0o755);
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function bash(script: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawn('bash', ['-eo', 'pipefail', '-c', script], {
    cwd: ROOT,
    env: { ...process.env, ...env, PATH: `${shimDir()}:${process.env.PATH}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  return new Promise((res) => child.on('exit', (code) => res({ code, out })));
}

/** The subset of Go templates the notification templates use. */
function renderGo(tpl: string, ctx: Record<string, unknown>): string {
  const lookup = (path: string) =>
    path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], ctx);
  return tpl
    .replace(/\{\{\s*index\s+\.([\w.]+)\s+"([^"]+)"\s*\}\}/g, (_, p: string, k: string) =>
      String((lookup(p) as Record<string, unknown>)[k]),
    )
    .replace(/\{\{\s*\.([\w.]+)\s*\}\}/g, (_, p: string) => String(lookup(p)));
}

/** Send one notification template for `app` as the Argo CD notifications controller would. */
async function notify(stack: Stack, template: string, app: Record<string, unknown>): Promise<Response> {
  const cm = read('argocd/notifications-cm.yaml') as { data: Record<string, string> };
  const service = parse(cm.data['service.webhook.extjob']!) as {
    url: string;
    headers: { name: string; value: string }[];
  };
  const tpl = parse(cm.data[`template.${template}`]!) as {
    webhook: { extjob: { method: string; path: string; body: string } };
  };
  const w = tpl.webhook.extjob;
  const headers = Object.fromEntries(
    service.headers.map((h) => [h.name, h.value.replace('$extjob-token', ADMIN_TOKEN)]),
  );
  expect(service.url).toMatch(/^https:\/\//);
  return fetch(`${stack.url}${renderGo(w.path, { app })}`, {
    method: w.method,
    headers,
    body: renderGo(w.body, { app }),
  });
}

const app = (jobId: string, phase: string, health = 'Healthy') => ({
  metadata: { name: 'web', annotations: { 'extjob.dev/job-id': jobId } },
  status: {
    health: { status: health },
    operationState: { phase, startedAt: '2026-11-27T10:00:00Z', syncResult: { revision: '4f1c2e9' } },
  },
});

const getJob = async (stack: Stack, id: string) => {
  const r = await fetch(`${stack.url}/v1/jobs/${id}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return r.status === 200 ? ((await r.json()) as Record<string, unknown>) : undefined;
};

describe('deploy/examples', { timeout: 120_000 }, () => {
  it('GitHub Actions installs the CLI from a tarball, not from the npm registry', () => {
    // no package named extjob is published: `npm install --global extjob` would fail
    // (or install someone else's package)
    const wf = read('github-actions/deploy.yml') as { jobs: { deploy: { steps: { run?: string }[] } } };
    const installs = wf.jobs.deploy.steps.map((s) => s.run ?? '').filter((r) => /\bnpm install\b/.test(r));
    expect(installs).toEqual(['npm install --global "$EXTJOB_CLI_TARBALL"']);
    expect(readFileSync(join(ROOT, 'docs/cli.md'), 'utf8')).toMatch(/^## Installing the CLI$/m);
  });

  it('GitHub Actions step waits; Argo CD notifications accept and finish the job: exit 0', async () => {
    const stack = await startStack();
    const wf = read('github-actions/deploy.yml') as {
      jobs: { deploy: { steps: { id?: string; run?: string }[] } };
    };
    const step = wf.jobs.deploy.steps.find((s) => s.id === 'deploy');
    const dir = mkdtempSync(join(tmpdir(), 'gha-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'output');
    const running = bash(step!.run!, {
      ...stack.env,
      GITHUB_RUN_ID: '9001',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_SHA: '4f1c2e9aa0b1c2d3',
      GITHUB_REPOSITORY: 'acme/web',
      GITHUB_OUTPUT: out,
    });
    const id = 'gha-9001-1-deploy';
    const job = await waitFor(() => getJob(stack, id), { timeoutMs: 30_000, what: 'the job' });
    expect(job).toMatchObject({ name: 'deploy 4f1c2e9', executor: 'argocd', labels: { repo: 'acme/web' } });
    expect((await notify(stack, 'extjob-accepted', app(id, 'Running'))).status).toBe(202);
    expect((await notify(stack, 'extjob-succeeded', app(id, 'Succeeded'))).status).toBe(202);
    // the controller may send twice: the same event id is applied once
    expect((await notify(stack, 'extjob-succeeded', app(id, 'Succeeded'))).status).toBe(202);
    const r = await running;
    expect(r.code, r.out).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(`job=${id}\n`);
    expect(await getJob(stack, id)).toMatchObject({
      state: 'passed',
      detailsUrl: 'https://argocd.example.com/applications/web',
      summary: 'synced 4f1c2e9, health Healthy',
    });
  });

  it('Buildkite step exits 1 when the Argo CD sync fails', async () => {
    const stack = await startStack();
    const pipeline = read('buildkite/pipeline.yml') as { steps: { key: string; command: string }[] };
    const command = pipeline.steps.find((s) => s.key === 'deploy')!.command.replaceAll('$$', '$');
    const running = bash(command, {
      ...stack.env,
      BUILDKITE_BUILD_ID: '0190-aaaa',
      BUILDKITE_BUILD_NUMBER: '42',
      BUILDKITE_COMMIT: 'c0ffee123456',
      BUILDKITE_PIPELINE_SLUG: 'web',
      BUILDKITE_REPO: 'git@github.com:acme/web.git',
    });
    const id = 'bk-0190-aaaa-deploy';
    await waitFor(() => getJob(stack, id), { timeoutMs: 30_000, what: 'the job' });
    expect((await notify(stack, 'extjob-failed', app(id, 'Failed', 'Degraded'))).status).toBe(202);
    const r = await running;
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/argocd\.sync\.Failed/);
    expect(await getJob(stack, id)).toMatchObject({ state: 'failed', exitCode: 1, labels: { build: '42' } });
  });

  it('the PostSync hook finishes the job through Kafka', async () => {
    const stack = await startStack();
    const id = 'bk-hook-deploy';
    expect((await cli(['create', '--name', 'deploy', '--id', id], stack.env)).code).toBe(0);
    const manifest = readFileSync(join(EXAMPLES, 'argocd/postsync-job.yaml'), 'utf8').replace(
      // the placeholder the pipeline fills in (envsubst syntax)
      ['$', '{EXTJOB_JOB_ID}'].join(''),
      id,
    );
    const job = parse(manifest) as {
      metadata: { annotations: Record<string, string> };
      spec: {
        template: { spec: { containers: { args: string[]; env: { name: string; value: string }[] }[] } };
      };
    };
    expect(job.metadata.annotations['argocd.argoproj.io/hook']).toBe('PostSync');
    const container = job.spec.template.spec.containers[0]!;
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]));
    env.EXTJOB_KAFKA_BROKERS = kafkaBrokers().join(',');
    env.EXTJOB_TOPIC_PREFIX = stack.topicPrefix;
    const args = container.args.map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => env[v] ?? ''));
    const r = await cli(args, env);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await getJob(stack, id))?.state === 'passed', {
      timeoutMs: 30_000,
      what: 'passed',
    });
    expect(await getJob(stack, id)).toMatchObject({ summary: 'PostSync hook completed', exitCode: 0 });
  });
});
