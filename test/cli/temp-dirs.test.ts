/** Temporary directories of the local stack (`extjob dev`, the test setup): a killed owner's are removed. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ownTempDir } from '../../src/cli/local/process.js';

describe('ownTempDir', () => {
  it("removes the directories of owners that died without cleaning up, and nobody else's", () => {
    const root = mkdtempSync(join(tmpdir(), 'extjob-tempdirs-test-'));
    const before = process.env.TMPDIR;
    process.env.TMPDIR = root;
    onTestFinished(() => {
      process.env.TMPDIR = before;
      rmSync(root, { recursive: true, force: true });
    });
    // a process that is gone (it ran and exited), one that is alive (this one)
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    }).stdout;
    const dir = (name: string, owner?: string) => {
      mkdirSync(join(root, name));
      if (owner !== undefined) writeFileSync(join(root, name, 'extjob-owner.pid'), owner);
      return join(root, name);
    };
    const orphan = dir('extjob-kafka-orphan', dead);
    const live = dir('extjob-kafka-live', String(process.pid));
    const unowned = dir('extjob-kafka-unowned');
    const other = dir('extjob-redis-orphan', dead); // another prefix: not this call's

    const own = ownTempDir('extjob-kafka-');
    expect(existsSync(orphan)).toBe(false);
    expect([live, unowned, other, own.dir].map(existsSync)).toEqual([true, true, true, true]);
    own.remove();
    expect(existsSync(own.dir)).toBe(false);
  });
});
