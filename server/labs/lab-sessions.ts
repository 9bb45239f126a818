/**
 * A student's sandbox for one lab: started on first visit, resumed on reload
 * (same sandbox, same terminals), re-adopted after a server restart (or
 * recreated, with a notice, when that is impossible). The (student, lab) ->
 * session link lives in SQLite; tokens are derived from a server secret so a
 * resumed or re-adopted session keeps the token its tabs already hold.
 */
import * as crypto from 'node:crypto';
import type { LabSession } from '../protocol/index';
import type { SandboxManager } from '../sandbox/index';
import type { Session, SessionManager } from '../sessions/session-manager';
import type { Store } from '../store/store';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import type { LabCatalog } from './catalog';
import { labSandboxOptions, notApplicable, prepareSandbox } from './runtime';

export class LabSessions {
  private readonly secret: string;
  /** In-flight starts, so two tabs opening the same lab get one sandbox. */
  private readonly starting = new Map<string, Promise<LabSession>>();

  constructor(
    private readonly sessions: SessionManager,
    private readonly sandboxes: SandboxManager,
    private readonly store: Store,
    private readonly catalog: LabCatalog,
    private readonly log: Logger,
  ) {
    this.secret = store.meta('token-secret', () => crypto.randomBytes(32).toString('hex'));
  }

  private token = (id: string) =>
    crypto.createHmac('sha256', this.secret).update(`session:${id}`).digest('base64url');

  /** The student's live session in the lab, if any. */
  find(owner: string, labId: string): Session | undefined {
    const id = this.store.getLabSession(owner, labId);
    const s = id ? this.sessions.get(id) : undefined;
    return s && s.owner === owner && s.lab === labId ? s : undefined;
  }

  /** Starts or resumes; opens any of the lab's named terminals that are not running. */
  start(owner: string, labId: string): Promise<LabSession> {
    const key = `${owner}\0${labId}`;
    let p = this.starting.get(key);
    if (!p) {
      p = this.doStart(owner, labId).finally(() => this.starting.delete(key));
      this.starting.set(key, p);
    }
    return p;
  }

  private async doStart(owner: string, labId: string): Promise<LabSession> {
    const loaded = this.catalog.labs.get(labId);
    if (!loaded) throw new RequestError('not-found', `no lab with id ${JSON.stringify(labId)}`);
    const na = notApplicable(loaded.lab, this.catalog.mode);
    if (na) throw new RequestError('unsupported', `this lab cannot run here: ${na}`);
    let s = this.find(owner, labId);
    let startMs = 0;
    let notice: string | undefined;
    if (!s) {
      // A row without a live session: the server restarted and could not keep the sandbox.
      if (this.store.getLabSession(owner, labId))
        notice =
          'Your previous sandbox could not be kept (the server restarted), so this is a fresh one. Your progress is kept; steps that need earlier work may have to be redone.';
      const t0 = Date.now();
      const created = await this.sessions.create({
        ...labSandboxOptions(loaded.lab),
        token: this.token,
        owner,
        lab: labId,
        prepare: (sb) => prepareSandbox(loaded, sb),
      });
      startMs = Date.now() - t0;
      this.store.saveLabSession(owner, labId, created.session);
      s = this.sessions.get(created.session) as Session;
      if (notice) s.notice = notice;
    }
    // A shell the student exited (or the grace period closed) comes back fresh.
    for (const [id, e] of s.terminals)
      if (e.terminal.exited) await this.sessions.closeTerminal(s, id);
    const names = new Set([...s.terminals.values()].map((e) => e.terminal.name));
    for (const t of loaded.lab.sandbox.terminals) {
      if (!names.has(t.name)) this.sessions.openTerminal(s, { name: t.name, cols: 80, rows: 24 });
    }
    notice = s.notice;
    s.notice = undefined;
    return {
      session: s.id,
      token: this.token(s.id),
      hostname: s.sandbox.record.hostname,
      terminals: [...s.terminals.values()].map((e) => ({
        term: e.terminal.id,
        name: e.terminal.name,
      })),
      ...(notice ? { notice } : {}),
      startMs,
    };
  }

  async end(owner: string, labId: string): Promise<boolean> {
    const s = this.find(owner, labId);
    if (!s) return false;
    await this.sessions.end(s.id);
    return true;
  }

  /**
   * After a restart: wrap every adopted sandbox that belongs to a lab session
   * in a session again (terminals reopen on the next visit, with a notice);
   * sandboxes nobody owns are destroyed.
   */
  async restore(adopted: string[]): Promise<{ restored: number; destroyed: number }> {
    const rows = new Map(this.store.listLabSessions().map((r) => [r.session, r]));
    let restored = 0;
    let destroyed = 0;
    for (const id of adopted) {
      const row = rows.get(id);
      if (row && this.catalog.labs.has(row.lab)) {
        this.sessions.adopt(this.sandboxes.get(id), {
          token: this.token,
          owner: row.owner,
          lab: row.lab,
        });
        const s = this.sessions.get(id) as Session;
        s.notice =
          'The server restarted. Your sandbox and its files and processes were kept; the terminals are new shells.';
        restored++;
      } else {
        // Never throws: a sandbox that cannot be torn down is quarantined, and the start goes on.
        await this.sandboxes.teardownOrQuarantine(this.sandboxes.get(id));
        destroyed++;
      }
    }
    this.log.info('lab sessions restored', { restored, destroyed });
    return { restored, destroyed };
  }
}
