// Lint rules: typescript-eslint's recommended set, no `any` in src/, and codec layers kept free of I/O.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Modules that only adapters (and the CLI) may import: codecs and engines stay free of I/O. */
const IO_MODULES = ['node:net', 'node:dgram', 'node:tls', 'node:http', 'node:https', 'node:child_process', 'node:fs', 'node:fs/promises', 'ws'];
const CODEC_GLOBS = ['src/stun/codec.ts', 'src/stun/codec-at.ts', 'src/derp/frame.ts', 'src/derp/constants.ts', 'src/disco/**/*.ts', 'src/portmap/natpmp.ts', 'src/portmap/pcp.ts', 'src/types/**/*.ts'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'test/interop/go/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
  },
  {
    files: ['src/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'error' },
  },
  {
    files: CODEC_GLOBS,
    rules: {
      'no-restricted-imports': ['error', { paths: IO_MODULES.map((name) => ({ name, message: 'codecs are pure: no I/O here' })) }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
