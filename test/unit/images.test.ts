import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { imageId, parseAptSources, toolsTree } from '../../server/sandbox/images';

test('apt sources: deb822 and one-line formats, deb only, disabled stanzas skipped', () => {
  const s = parseAptSources([
    {
      name: 'debian.sources',
      text: 'Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n\nTypes: deb\nURIs: http://other.example/x\nSuites: bookworm\nComponents: main\nEnabled: no\n',
    },
    {
      name: 'sources.list',
      text: '# comment\ndeb [arch=amd64] http://one.example/debian bookworm main\ndeb-src http://src.example bookworm main\n',
    },
  ]);
  assert.deepEqual(
    s.map((x) => [x.uri, x.suites.join(','), x.components.join(',')]),
    [
      ['http://mirror.example/debian', 'bookworm,bookworm-updates', 'main,contrib'],
      ['http://one.example/debian', 'bookworm', 'main'],
    ],
  );
});

test('image ids are content addresses of the recipe', () => {
  const d = { id: 'debian', codename: 'bookworm', arch: 'amd64' };
  assert.equal(imageId(d), imageId({ ...d }));
  assert.notEqual(imageId(d), imageId({ ...d, codename: 'trixie' }));
  assert.notEqual(imageId(d), imageId(d, ['bash']));
  assert.match(imageId(d), /^[0-9a-f]{16}$/);
});

test("the check toolset copies the image's programs (execute-only) and libraries", () => {
  const images = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-images-'));
  try {
    const id = 'img0';
    const rootfs = path.join(images, id, 'rootfs');
    for (const d of ['usr/bin', 'usr/sbin', 'usr/lib/x86_64-linux-gnu'])
      fs.mkdirSync(path.join(rootfs, d), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'usr/bin/prog'), '\x7fELF....', { mode: 0o755 });
    fs.writeFileSync(path.join(rootfs, 'usr/lib/x86_64-linux-gnu/libc.so.6'), 'lib');
    const info = {
      id,
      rootfs,
      suite: 'bookworm',
      arch: 'amd64',
      packages: [],
      builtAt: '',
      buildSeconds: 0,
    };
    const t = toolsTree(info, images);
    assert.equal(fs.statSync(path.join(t.bin, 'prog')).mode & 0o777, 0o711, 'execute-only');
    assert.deepEqual(
      t.libs.map((l) => l.target),
      ['usr/lib/x86_64-linux-gnu'],
    );
    assert.equal(fs.readFileSync(path.join(t.libs[0]!.hostDir, 'libc.so.6'), 'utf8'), 'lib');
  } finally {
    fs.rmSync(images, { recursive: true, force: true });
  }
});
