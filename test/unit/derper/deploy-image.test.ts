/**
 * deploy/Dockerfile against its build context (docs/DEPLOY.md §2b). No Docker engine runs on the machines this is
 * tested on, so the checks an engine would make first are made here: every `COPY` source (not `--from` a stage)
 * survives deploy/Dockerfile.dockerignore, and every file the derper loads at run time, following relative imports
 * from bin/wiremesh.js, lies under what the runtime stage copies.
 *
 * .dockerignore semantics as BuildKit applies them: patterns in order, the last one that matches a path (or one of
 * its parent directories) decides, `!` re-includes; `**` spans directories, `*` and `?` stay within one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const DOCKERFILE = path.join(ROOT, 'deploy/Dockerfile');
const tracked = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter((f) => f !== '');

interface Rule {
  re: RegExp;
  include: boolean;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      const slash = glob[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function parseIgnore(text: string): Rule[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const include = l.startsWith('!');
      const p = path.posix.normalize((include ? l.slice(1) : l).replace(/^\/+/, ''));
      return { re: globToRegExp(p), include };
    });
}

/** True when `file` (relative, posix) is sent to the builder. */
function inContext(rules: Rule[], file: string): boolean {
  const parts = file.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let included = true;
  for (const r of rules) if (prefixes.some((p) => r.re.test(p))) included = r.include;
  return included;
}

/** The sources of each `COPY` that reads the build context (not another stage), and the runtime stage's. */
function copies(dockerfile: string): { context: string[][]; runtime: string[] } {
  const context: string[][] = [];
  let runtime: string[] = [];
  for (const line of dockerfile.split('\n')) {
    if (/^FROM\b/i.test(line)) runtime = [];
    const m = /^COPY\s+(.*)$/i.exec(line.trim());
    if (m === null) continue;
    const words = m[1]!.split(/\s+/);
    const fromStage = words.some((w) => w.startsWith('--from='));
    const args = words.filter((w) => !w.startsWith('--'));
    const sources = args.slice(0, -1);
    if (!fromStage) context.push(sources);
    runtime.push(...sources);
  }
  return { context, runtime };
}

/** Files reachable from `entry` by relative module specifiers (static, dynamic, or named in a table). */
function importClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const f = queue.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const src = readFileSync(path.join(ROOT, f), 'utf8');
    // Relative module specifiers, also those held in tables for a later import() (the CLI's subcommands).
    for (const m of src.matchAll(/'(\.{1,2}\/[^'\s]+\.(?:ts|js|json))'/g)) {
      const dep = path.posix.normalize(path.posix.join(path.posix.dirname(f), m[1]!));
      if (existsSync(path.join(ROOT, dep))) queue.push(dep);
    }
  }
  return seen;
}

const rules = parseIgnore(readFileSync(path.join(ROOT, 'deploy/Dockerfile.dockerignore'), 'utf8'));
const { context, runtime } = copies(readFileSync(DOCKERFILE, 'utf8'));

test('the .dockerignore matcher follows BuildKit on a table of cases', () => {
  const r = parseIgnore('**\n!bin/**\n!package.json\nsrc/**/*.md\n!native/**\n');
  const cases: [string, boolean][] = [
    ['README.md', false],
    ['bin/wiremesh.js', true],
    ['package.json', true],
    ['package-lock.json', false],
    ['native/tls_conn.c', true],
    ['src/derp/frame.ts', false],
    ['test/unit/x.ts', false],
  ];
  for (const [f, want] of cases) assert.equal(inContext(r, f), want, f);
  const r2 = parseIgnore('node_modules\n*.log\n!keep.log\n/build\n');
  const cases2: [string, boolean][] = [
    ['node_modules/a/b.js', false],
    ['x.log', false],
    ['keep.log', true],
    ['dir/x.log', true], // `*` does not cross a directory
    ['build/tls_conn.node', false],
    ['src/build.ts', true],
  ];
  for (const [f, want] of cases2) assert.equal(inContext(r2, f), want, f);
});

test('every COPY from the build context finds its files after .dockerignore', () => {
  assert.ok(context.length >= 4, 'the Dockerfile copies from the context');
  for (const sources of context) {
    for (const s of sources) {
      const clean = s.replace(/\/+$/, '');
      const files = tracked.filter((f) => f === clean || f.startsWith(`${clean}/`));
      assert.ok(files.length > 0, `COPY ${s}: nothing tracked there`);
      const missing = files.filter((f) => !inContext(rules, f));
      assert.deepEqual(missing, [], `COPY ${s}: excluded by deploy/Dockerfile.dockerignore`);
    }
  }
});

test('everything bin/wiremesh.js loads is in the runtime image', () => {
  const copied = runtime.map((s) => s.replace(/\/+$/, ''));
  const files = [...importClosure('bin/wiremesh.js')];
  assert.ok(files.length > 50, `import closure found ${files.length} files`);
  const outside = files.filter((f) => !copied.some((c) => f === c || f.startsWith(`${c}/`)));
  assert.deepEqual(outside, [], 'loaded at run time but not copied into the image');
  const excluded = files.filter((f) => !inContext(rules, f));
  assert.deepEqual(excluded, [], 'loaded at run time but left out of the build context');
});
