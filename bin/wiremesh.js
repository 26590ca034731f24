#!/usr/bin/env node
// wiremesh CLI entry: checks the runtime, then hands over to src/cli/main.ts (run by Node's type stripping).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`wiremesh needs Node.js 24 (this is ${process.version}); run it through npm (npx wiremesh ...) so the project's pinned Node 24 is used\n`);
  process.exit(1);
}
await import('../src/cli/main.ts');
