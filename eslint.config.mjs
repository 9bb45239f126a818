// One linter for TypeScript; import direction is part of the architecture:
// each server folder may import only the layers below it (server/README.md
// has the table this enforces), only server/sandbox may import native/, and
// web/ may import only server/protocol.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

/**
 * What each server folder may import of ours (besides its own files). A
 * layer named here may be imported through its public module only where one
 * exists: other layers reach the sandbox through sandbox/index (or
 * sandbox/errors for the error class alone), never the files behind it.
 */
const SERVER_LAYERS = {
  protocol: [],
  util: [],
  config: ['util'],
  store: [],
  sandbox: ['native', 'store', 'util', 'config'],
  terminals: ['protocol', 'util'],
  sessions: ['sandbox', 'terminals', 'protocol', 'util'],
  labs: ['sandbox', 'sessions', 'terminals', 'store', 'protocol', 'util', 'config'],
  classroom: ['protocol', 'store', 'util'],
  transport: ['labs', 'sessions', 'classroom', 'sandbox/errors', 'protocol', 'util'],
  cli: [
    'labs',
    'sessions',
    'classroom',
    'transport',
    'sandbox',
    'store',
    'protocol',
    'util',
    'config',
  ],
};
const ALL_LAYERS = [...Object.keys(SERVER_LAYERS), 'native'];
/** Layers with a public module: importing anything else inside them is an error. */
const PUBLIC = { sandbox: ['index', 'errors'] };

/**
 * no-restricted-imports sees only static imports; the CLI loads its commands
 * with `await import(...)` (and `require` exists), so the same patterns are
 * checked on those too.
 */
const dynamicImports = {
  meta: { type: 'problem', schema: [{ type: 'array' }] },
  create(context) {
    const patterns = (context.options[0] ?? []).map((p) => ({ ...p, re: new RegExp(p.regex) }));
    const check = (node, source) => {
      if (typeof source !== 'string') return;
      const hit = patterns.find((p) => p.re.test(source));
      if (hit) context.report({ node, message: `'${source}' import: ${hit.message}` });
    };
    return {
      ImportExpression: (node) => check(node, node.source.value),
      CallExpression: (node) => {
        if (node.callee.type === 'Identifier' && node.callee.name === 'require')
          check(node, node.arguments[0]?.value);
      },
    };
  },
};

function serverLayers() {
  return Object.entries(SERVER_LAYERS).map(([folder, allowed]) => {
    const files = folder === 'config' ? ['server/config.ts'] : [`server/${folder}/**/*.ts`];
    const allowedLayers = new Set(allowed.map((a) => a.split('/')[0]));
    const patterns = [];
    for (const layer of ALL_LAYERS) {
      if (layer === folder) continue;
      // An import reaches `layer` when a path segment names it after a `..`:
      // ../sandbox/x, ../../native/index, ../config.
      const reach = `^(\\.\\./)+(server/)?${layer}(/|$)`;
      if (!allowedLayers.has(layer)) {
        patterns.push({
          regex: reach,
          message: `server/${folder} may not import ${layer} (see the layer table in server/README.md)`,
        });
        continue;
      }
      const only = allowed
        .filter((a) => a.startsWith(`${layer}/`))
        .map((a) => a.slice(layer.length + 1));
      const open = only.length ? only : PUBLIC[layer];
      if (open) {
        patterns.push({
          regex: `^(\\.\\./)+(server/)?${layer}/(?!(${open.join('|')})$)`,
          message: `server/${folder} may import ${layer} only through ${open.map((o) => `${layer}/${o}`).join(' or ')}`,
        });
      }
    }
    return {
      files,
      plugins: { layers: { rules: { 'dynamic-imports': dynamicImports } } },
      rules: {
        'no-restricted-imports': ['error', { patterns }],
        'layers/dynamic-imports': ['error', patterns],
      },
    };
  });
}

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'native/build/**',
      'web/.next/**',
      'test/fixtures/**',
      'test/artifacts/**',
      'bin/**',
      'scripts/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/naming-convention': [
        'error',
        {
          selector: 'interface',
          format: ['PascalCase'],
          custom: { regex: '^I[A-Z]', match: false },
        },
        { selector: 'typeLike', format: ['PascalCase'] },
      ],
    },
  },
  ...serverLayers(),
  {
    files: ['web/**/*.{ts,tsx}'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/server/**', '!**/server/protocol', '!**/server/protocol/**'],
              message: 'web/ may import only server/protocol',
            },
          ],
        },
      ],
    },
  },
  // The Rules of React for the web app. Missing effect dependencies are errors,
  // not warnings: `npm run lint` does not fail on warnings.
  {
    files: ['web/**/*.{ts,tsx}'],
    plugins: reactHooks.configs.flat.recommended.plugins,
    rules: {
      ...reactHooks.configs.flat.recommended.rules,
      'react-hooks/exhaustive-deps': 'error',
    },
  },
);
