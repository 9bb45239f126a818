/**
 * The layer table in server/README.md is enforced by ESLint: a wrong-direction
 * import fails `npm run lint`. These lint the same snippet as if it lived in
 * different folders, with the project's own eslint.config.mjs.
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(__dirname, '..', '..', '..');

interface LintMessage {
  ruleId: string | null;
  message: string;
}

async function lint(file: string, code: string): Promise<LintMessage[]> {
  // eslint is ESM-first and a devDependency: load it only here.
  const { ESLint } = (await import('eslint')) as typeof import('eslint');
  const eslint = new ESLint({ cwd: root });
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  return (result?.messages ?? []).filter(
    (m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'layers/dynamic-imports',
  );
}

/** [file the import is in, import line, expected message (or undefined: allowed)] */
const CASES: [string, string, RegExp | undefined][] = [
  // upwards: sessions/ knows nothing of labs
  [
    'server/sessions/x.ts',
    "import { LabCatalog } from '../labs/catalog';",
    /sessions may not import labs/,
  ],
  // only sandbox/ touches native/
  ['server/labs/x.ts', "import { loadNative } from '../../native/index';", /may not import native/],
  [
    'server/transport/x.ts',
    "import { loadNative } from '../../native/index';",
    /may not import native/,
  ],
  ['server/sandbox/x.ts', "import { loadNative } from '../../native/index';", undefined],
  // the sandbox only through its public module
  [
    'server/sessions/x.ts',
    "import { killCgroups } from '../sandbox/cgroups';",
    /only through sandbox\/index or sandbox\/errors/,
  ],
  ['server/sessions/x.ts', "import { killCgroups } from '../sandbox/index';", undefined],
  // transport gets the error class and nothing else of the sandbox
  ['server/transport/x.ts', "import { SandboxError } from '../sandbox/errors';", undefined],
  [
    'server/transport/x.ts',
    "import { SandboxManager } from '../sandbox/index';",
    /only through sandbox\/errors/,
  ],
  // the lowest layers import nothing of ours
  ['server/protocol/x.ts', "import { createLogger } from '../util/logger';", /may not import util/],
  ['server/store/x.ts', "import { createLogger } from '../util/logger';", /may not import util/],
  ['server/terminals/x.ts', "import { createLogger } from '../util/logger';", undefined],
  // web/ may import only server/protocol
  ['web/lib/x.ts', "import { LIMITS } from '../../server/sandbox/index';", /web\/ may import only/],
  ['web/lib/x.ts', "import { LIMITS } from '../../server/protocol/index';", undefined],
];

for (const [file, line, want] of CASES) {
  test(`${file}: ${line} is ${want ? 'refused' : 'allowed'}`, async () => {
    const name = /import \{ (\w+) \}/.exec(line)?.[1] as string;
    const msgs = await lint(file, `${line}\nexport const used = [${name}];\n`);
    if (!want) return assert.deepEqual(msgs, []);
    assert.equal(msgs.length, 1, JSON.stringify(msgs));
    assert.match(msgs[0]?.message ?? '', want);
  });
}

test('a dynamic import() or require() is held to the same rules', async () => {
  const dyn = "export const load = () => import('../../native/index');\n";
  const msgs = await lint('server/cli/x.ts', dyn);
  assert.equal(msgs.length, 1, JSON.stringify(msgs));
  assert.match(msgs[0]?.message ?? '', /may not import native/);
  const deep = "export const load = () => import('../sandbox/manager');\n";
  assert.match(
    (await lint('server/cli/x.ts', deep))[0]?.message ?? '',
    /only through sandbox\/index/,
  );
  const req =
    "// eslint-disable-next-line @typescript-eslint/no-require-imports\nexport const x = require('../labs/catalog');\n";
  assert.equal((await lint('server/sessions/x.ts', req)).length, 1);
  const ok = "export const load = () => import('../sandbox/index');\n";
  assert.deepEqual(await lint('server/cli/x.ts', ok), []);
});
