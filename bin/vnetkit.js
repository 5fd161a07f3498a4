#!/usr/bin/env node
// Launcher for the `vnetkit` command.
// - In a checkout (src/ present, tsx installed as a dev dependency) it runs the
//   TypeScript source, so the command always matches the code in front of you
//   and never a stale dist/ from an earlier build.
// - In the published package (only dist/ is shipped) it runs dist/cli.js,
//   which tsup builds from src/daemon/cli.ts.
import { existsSync } from 'node:fs';

const src = new URL('../src/daemon/cli.ts', import.meta.url);
const dist = new URL('../dist/cli.js', import.meta.url);

let cli;
if (existsSync(src)) {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    register = undefined;
  }
  if (register !== undefined) {
    register();
    cli = await import(src.href);
  }
}
if (cli === undefined) {
  if (!existsSync(dist)) {
    process.stderr.write('vnetkit: neither the TypeScript source with tsx (run `npm ci`) nor dist/cli.js (run `npm run build`) is available\n');
    process.exit(1);
  }
  cli = await import(dist.href);
}
await cli.run(process.argv.slice(2));
