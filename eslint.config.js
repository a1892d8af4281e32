// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { LAYER_ZONES } from './layers.config.js';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.weir/', 'coverage/', 'bin/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
    },
  },
  // The layers (layers.config.js, drawn in the README): what each folder may import, and no cycles.
  {
    files: ['src/**/*.ts', 'machines/**/*.ts'],
    plugins: { 'import-x': /** @type {any} */ (importX) },
    settings: {
      ...importX.flatConfigs.typescript.settings,
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', { zones: LAYER_ZONES }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-duplicates': 'error',
    },
  },
  {
    files: ['machines/**/*.ts'],
    rules: {
      // The statecharts are data on XState; every implementation is provided (machine.provide()).
      'no-restricted-imports': ['error', { patterns: [{ regex: '^(?!xstate$|\\.)', message: 'machines/ imports only xstate (layers.config.js)' }] }],
    },
  },
  // The web console runs in the browser: browser globals, no Node built-ins, and from the server's
  // sources types only (a value import would bundle server code).
  {
    files: ['console/src/**/*.{ts,tsx}'],
    languageOptions: { globals: globals.browser },
    rules: {
      'no-restricted-globals': ['error', 'process', 'Buffer', 'require', '__dirname', 'global'],
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^(\\.\\./)+(src|machines)/', allowTypeImports: true, message: 'the console imports only types from the server (console/src/types.ts)' },
            { regex: '^node:', message: 'the console runs in the browser' },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
