/**
 * Locates the real Go Tailscale binaries (installed by scripts/install-lab-deps.sh with `go install`), and
 * other external peers on PATH, for interop and lab tests; returns null when absent so tests can skip clearly.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

let gopathBin: string | null | undefined;

function goBinDir(): string | null {
  if (gopathBin !== undefined) return gopathBin;
  if (process.env.WIREMESH_GO_BIN) return (gopathBin = process.env.WIREMESH_GO_BIN);
  try {
    gopathBin = path.join(execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim(), 'bin');
  } catch {
    gopathBin = null;
  }
  return gopathBin;
}

/** Path of a Go binary such as `derper`, `derpprobe` or `stunc`, or null if it is not installed. */
export function goBinary(name: string): string | null {
  const dir = goBinDir();
  const p = dir === null ? null : path.join(dir, name);
  return p !== null && existsSync(p) ? p : null;
}

/** Path of a program on PATH (e.g. `turnserver`), or null. */
export function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, name);
    if (dir !== '' && existsSync(p)) return p;
  }
  for (const dir of ['/usr/sbin', '/sbin']) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

export const isRoot = (): boolean => process.getuid?.() === 0;
