/**
 * `underlay serve`: one process, one port. Until the web app lands (issue
 * #6) this serves a status page and a health endpoint; it already owns the
 * sandbox lifecycle: on start it re-adopts or reaps what a previous run left.
 */
import * as http from 'node:http';
import { loadConfig } from '../config';
import { detectCgroupMode } from '../sandbox/cgroups';
import { findImage } from '../sandbox/images';
import { SandboxManager } from '../sandbox/sandbox';
import { Store } from '../store/store';
import { createLogger } from '../util/logger';

export interface ServeOptions {
  port: number;
  host: string;
  dev: boolean;
}

function page(body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Underlay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#1b1f24;background:#fafafa}
code{background:#eef;padding:.1em .3em;border-radius:3px}h1{margin-bottom:.2em}.muted{color:#57606a}
table{border-collapse:collapse}td{padding:.2em .8em .2em 0}</style></head><body>${body}</body></html>`;
}

export async function serve(opts: ServeOptions): Promise<void> {
  const log = createLogger('info');
  const config = loadConfig();
  const store = new Store(config.stateDir);
  const sandboxes = new SandboxManager({ config, store, logger: log });
  const { adopted, reaped } = await sandboxes.adoptOrReap();
  log.info('sandboxes from a previous run', { adopted, reaped });

  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, sandboxes: store.list().length }));
      return;
    }
    if (req.url !== '/' && req.url !== '/index.html') {
      res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('<h1>Not found</h1><p><a href="/">Back to Underlay</a></p>'));
      return;
    }
    const img = findImage(config.imagesDir);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      page(`<h1>Underlay</h1><p class="muted">Learn how containers really work, on a real kernel.</p>
<p>The lab web app is being built. This server already runs the sandbox core.</p>
<table><tr><td>cgroup mode</td><td><code>${detectCgroupMode()}</code></td></tr>
<tr><td>base image</td><td><code>${img ? img.id : 'not built'}</code></td></tr>
<tr><td>live sandboxes</td><td>${store.list().length}</td></tr></table>
<p>Try a sandbox from a shell on this host: <code>underlay sandbox run -t</code></p>`),
    );
  });
  await new Promise<void>((resolve) => server.listen(opts.port, opts.host, resolve));
  log.info('listening', { url: `http://${opts.host}:${opts.port}/`, dev: opts.dev });
  const stop = async () => {
    server.close();
    store.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
