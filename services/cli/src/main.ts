#!/usr/bin/env node
// The `postern` operator CLI. See README.md, or run `postern --help`.
import { run } from './cli.js';

process.exitCode = await run(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});
