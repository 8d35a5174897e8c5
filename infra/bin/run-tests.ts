// Runs the test files of the workspace with node's test runner.
// Usage: tsx infra/bin/run-tests.ts [filter...]   (a filter is a substring of the path)
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function walk(dir: string, out: string[]): void {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
}

const files: string[] = [];
for (const top of ['libs', 'services', 'loadtest']) {
  for (const pkg of readdirSync(join(root, top), { withFileTypes: true })) {
    if (!pkg.isDirectory()) continue;
    const testDir = top === 'loadtest' ? join(root, top, pkg.name) : join(root, top, pkg.name, 'test');
    if (top === 'loadtest' && pkg.name !== 'test') continue;
    try {
      walk(testDir, files);
    } catch {
      // package without tests
    }
  }
}
const selected = files.filter((f) => filters.length === 0 || filters.some((x) => f.includes(x))).sort();
if (selected.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--conditions=development', '--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...selected],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
