/**
 * The derper key file (`-c`, spec/derp.md §2, §16.1): JSON `{"PrivateKey": "privkey:<64 hex>"}`, tab-indented,
 * mode 0600, created with a fresh key when missing. Also the mesh PSK file (64 hex digits, trimmed).
 * Adapter: the only derper code reading these files.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { WiremeshError } from '../errors.ts';
import { generatePrivate, parsePrivate, privateText, type NodePrivate } from '../types/key.ts';

/** The file's JSON text for a key (Go's json.MarshalIndent with a tab, no trailing newline). */
export function encodeKeyFile(priv: NodePrivate): string {
  return JSON.stringify({ PrivateKey: privateText(priv) }, null, '\t');
}

/** Parses the key file's JSON; keys are matched case-insensitively as Go's encoding/json does. */
export function decodeKeyFile(text: string): NodePrivate {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new WiremeshError('keyfile_json', `derper key file: invalid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new WiremeshError('keyfile_json', 'derper key file: want a JSON object');
  const entry = Object.entries(v).find(([k]) => k.toLowerCase() === 'privatekey');
  if (entry === undefined || typeof entry[1] !== 'string') throw new WiremeshError('keyfile_no_key', 'derper key file: no PrivateKey');
  return parsePrivate(entry[1]);
}

/** Writes `data` atomically (temp file + rename) with the given mode. */
export async function writeFileAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.tmp${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await chmod(tmp, mode); // the umask may have narrowed or the mode must be exact
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Loads the key file, creating it (and its directory) with a fresh key when it does not exist. */
export async function loadOrCreateKeyFile(file: string): Promise<{ key: NodePrivate; created: boolean }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const key = generatePrivate();
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, encodeKeyFile(key), 0o600);
    return { key, created: true };
  }
  return { key: decodeKeyFile(text), created: false };
}

/** A mesh key: exactly 64 hex digits after trimming whitespace (§2). */
export function parseMeshKey(text: string): Uint8Array {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(t)) throw new WiremeshError('invalid_mesh_key', 'invalid mesh key: want 64 hex digits');
  return Uint8Array.from(Buffer.from(t, 'hex'));
}

export async function readMeshKeyFile(file: string): Promise<Uint8Array> {
  return parseMeshKey(await readFile(file, 'utf8'));
}

/** The default `--mesh-psk-file`: the first of the standard locations that exists, else '' (§16.1). */
export function defaultMeshPskFile(candidates: readonly string[], home: string | undefined): string {
  const all = [...candidates];
  if (home !== undefined && home !== '') all.push(path.join(home, 'keys', 'derp-mesh.key'));
  return all.find((p) => existsSync(p)) ?? '';
}
