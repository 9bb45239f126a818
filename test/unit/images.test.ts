import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { imageId, parseAptSources } from '../../server/sandbox/images';

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
