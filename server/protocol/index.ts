/**
 * The wire protocol between the browser and `underlay serve`: one typed,
 * runtime-validated module shared by web/ and server/. No Node imports.
 * Specified for third-party clients in docs/protocol.md.
 *
 * Transport: socket.io, websocket transport only, one socket per browser tab,
 * terminals multiplexed by id. Output is raw bytes (binary frames) with a
 * byte offset per terminal; the client decodes UTF-8 with one streaming
 * decoder per terminal and acknowledges what it has rendered.
 */
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;

/** Limits both sides agree on. */
export const LIMITS = {
  /** Max characters in one `term:input` (pastes are chunked by the client). */
  inputChars: 4096,
  /** Largest socket.io message the server accepts, in bytes. */
  maxMessageBytes: 64 * 1024,
  /** Terminal geometry clamp. */
  minDim: 1,
  maxDim: 500,
  /** Client acks at least every this many rendered bytes. */
  ackEveryBytes: 32 * 1024,
  /**
   * A socket's window: the server sends it at most this many unacknowledged
   * bytes at first, more (up to maxWindowBytes) to a client that acknowledges
   * a full window within ~10 ms; a paused pty resumes when a socket is below
   * a quarter of its window. maxWindowBytes leaves room in the 1 MiB replay
   * buffer, so a socket that reconnects mid-flood still resumes exactly.
   */
  highWaterBytes: 256 * 1024,
  maxWindowBytes: 512 * 1024,
  /** Terminals per session. */
  terminalsPerSession: 8,
  /** Sockets connected to one session at once (tabs). */
  socketsPerSession: 16,
  /** Read-only instructor views of one session at once (not counted above). */
  watchersPerSession: 4,
  /** Characters in an instructor's notice to a class. */
  noticeChars: 280,
} as const;

const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'an id of 1-64 letters, digits, _ or -');
const dim = z.number().int().min(LIMITS.minDim).max(LIMITS.maxDim);

/**
 * socket.io `auth` payload of the handshake: a session's own client (its
 * id and token), or an instructor watching a student's lab session
 * read-only (docs/classroom.md#watching): the cohort, the instructor
 * token, the student's key from the instructor API, and the lab.
 */
export const HandshakeAuth = z.union([
  z.object({
    v: z.literal(PROTOCOL_VERSION),
    session: id,
    token: z.string().min(16).max(256),
  }),
  z
    .object({
      v: z.literal(PROTOCOL_VERSION),
      watch: z
        .object({
          cohort: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/),
          token: z.string().min(16).max(256),
          student: z.string().regex(/^[0-9a-f]{16}$/),
          lab: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
        })
        .strict(),
    })
    // Strict: a watch carrying a session id too is a confused client, not a watch.
    .strict(),
]);
export type HandshakeAuth = z.infer<typeof HandshakeAuth>;
export type WatchAuth = Extract<HandshakeAuth, { watch: unknown }>['watch'];

// ---- client -> server --------------------------------------------------------

export const TermOpen = z
  .object({
    /** Attach to (resume) this terminal; omit to open a new one. */
    term: id.optional(),
    /** Label for a new terminal, e.g. "T2". */
    name: z.string().max(32).optional(),
    /**
     * The client's size. Required for a new terminal; when attaching, the pty
     * is resized to it, and without it keeps its size (a hidden tab that
     * cannot measure itself yet, a read-only view).
     */
    cols: dim.optional(),
    rows: dim.optional(),
    /** Resume: the offset of the first byte not yet received. */
    offset: z.number().int().min(0).optional(),
  })
  .strict()
  .refine((o) => (o.cols === undefined) === (o.rows === undefined), {
    message: 'give cols and rows together',
    path: ['cols'],
  })
  .refine((o) => o.term !== undefined || o.cols !== undefined, {
    message: 'a new terminal needs cols and rows',
    path: ['cols'],
  });
export type TermOpen = z.infer<typeof TermOpen>;

export const TermInput = z
  .object({ term: id, data: z.string().min(1).max(LIMITS.inputChars) })
  .strict();
export type TermInput = z.infer<typeof TermInput>;

export const TermResize = z.object({ term: id, cols: dim, rows: dim }).strict();
export type TermResize = z.infer<typeof TermResize>;

export const TermAck = z
  .object({
    term: id,
    bytes: z
      .number()
      .int()
      .min(1)
      .max(64 * 1024 * 1024),
  })
  .strict();
export type TermAck = z.infer<typeof TermAck>;

export const TermClose = z.object({ term: id }).strict();
export type TermClose = z.infer<typeof TermClose>;

// ---- live kernel-state panels (labs/README.md#live-panels) -------------------

const absPath = z
  .string()
  .regex(/^\/[^\0]{0,255}$/, 'an absolute path')
  .describe('An absolute path as the sandbox sees it.');

const PANEL_TYPES = ['namespaces', 'cgroup-cpu', 'overlay', 'capabilities', 'mounts'];

/** What a lab step declares (`panels:` in lab.yaml): the same shape on the wire. */
export const PanelSpec = z.discriminatedUnion(
  'type',
  [
    z
      .object({
        type: z.literal('namespaces'),
        types: z
          .array(z.enum(['pid', 'uts', 'ipc', 'mnt', 'net', 'user', 'cgroup', 'time']))
          .min(1)
          .optional()
          .describe('Namespace types to show (default: all but time).'),
      })
      .strict()
      .describe(
        "The sandbox's processes grouped by namespace, per type; hostnames per UTS namespace.",
      ),
    z
      .object({
        type: z.literal('cgroup-cpu'),
        group: z
          .string()
          .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'a cgroup path relative to the cpu root')
          .describe('The group, relative to the cpu controller root (e.g. lab).'),
      })
      .strict()
      .describe("A group's CPU use over time, its quota, and throttled periods (v1 and v2)."),
    z
      .object({
        type: z.literal('overlay'),
        lower: absPath.optional(),
        upper: absPath.optional(),
        merged: absPath.optional(),
      })
      .strict()
      .describe('The trees of an overlay: whiteouts, opaque dirs and copied-up files marked.'),
    z
      .object({
        type: z.literal('capabilities'),
        files: z.array(absPath).max(8).default([]).describe('Files whose capabilities to decode.'),
        processes: z
          .array(z.string().min(1).max(15))
          .max(8)
          .default([])
          .describe('Process names (comm) whose newest process to show.'),
      })
      .strict()
      .describe('File capabilities and the sets of chosen processes, decoded to names.'),
    z
      .object({
        type: z.literal('mounts'),
        under: absPath
          .default('/')
          .describe('Show the mount points at or below this path (default: all of them).'),
      })
      .strict()
      .describe(
        'The mount table of every mount namespace in the sandbox, with propagation (shared:N, master:N); mounts below /proc and /sys are counted, not listed.',
      ),
  ],
  {
    // zod's own words for an unknown `type` are "Invalid input": name the choices.
    error: (iss) =>
      iss.code === 'invalid_union'
        ? `a panel's type is one of ${PANEL_TYPES.join(', ')}`
        : undefined,
  },
);
export type PanelSpec = z.infer<typeof PanelSpec>;

/** Live data for a step's panels while the page shows them; `panel:unwatch` (or another watch) stops it. */
export const PanelWatch = z.object({ step: id }).strict();
export type PanelWatch = z.infer<typeof PanelWatch>;

export interface PanelProc {
  pid: number;
  comm: string;
  /** The terminal it was started from (T1, T2...), when it has one. */
  term?: string;
}
export interface NamespacesPanel {
  kind: 'namespaces';
  types: {
    type: string;
    groups: { inode: number; sandbox: boolean; hostname?: string | null; procs: PanelProc[] }[];
  }[];
}
export interface CgroupCpuPanel {
  kind: 'cgroup-cpu';
  group: string;
  exists: boolean;
  version?: 'v1' | 'v2';
  /** Percent of one CPU since the last update (null on the first). */
  pct?: number | null;
  quotaPct?: number | null;
  throttled?: number | null;
  periods?: number | null;
  procs?: PanelProc[];
}
export interface OverlayEntry {
  path: string;
  type: 'dir' | 'file' | 'whiteout' | 'link';
  opaque?: boolean;
  copiedUp?: boolean;
  size?: number;
}
export interface OverlayPanel {
  kind: 'overlay';
  mounted: boolean;
  layers: {
    lower?: OverlayEntry[] | null;
    upper?: OverlayEntry[] | null;
    merged?: OverlayEntry[] | null;
  };
}
export interface CapabilitiesPanel {
  kind: 'capabilities';
  files: {
    path: string;
    exists: boolean;
    setuid?: boolean;
    uid?: number;
    caps?: {
      version: number;
      effective: boolean;
      permitted: string[];
      inheritable: string[];
      rootid?: number;
    };
  }[];
  processes: { name: string; found: boolean; pid?: number; sets?: Record<string, string[]> }[];
}
export interface MountEntry {
  id: number;
  parent: number;
  target: string;
  fstype: string;
  source: string;
  /** The path inside its file system that is mounted (a bind mount's source: not "/"). */
  root: string;
  /** Propagation tags from mountinfo: shared:N, master:N, propagate_from:N, unbindable; none: private. */
  tags: string[];
  ro: boolean;
}
export interface MountsPanel {
  kind: 'mounts';
  under: string;
  namespaces: {
    inode: number;
    sandbox: boolean;
    procs: PanelProc[];
    mounts: MountEntry[];
    /** Mounts under `under` not listed: below /proc or /sys, or past the size bound. */
    folded: number;
  }[];
}
export type PanelData =
  | MountsPanel
  | NamespacesPanel
  | CgroupCpuPanel
  | OverlayPanel
  | CapabilitiesPanel
  | { kind: 'error'; message: string };

/** At most two a second per watching socket; every string in it is the sandbox's: show it as text. */
export interface PanelUpdate {
  step: string;
  /** Seconds since the epoch, when it was read. */
  t: number;
  panels: PanelData[];
}

// ---- server -> client --------------------------------------------------------

export type TermOpenResult =
  | {
      ok: true;
      term: string;
      name: string;
      /** Offset of the first byte the server will send next. */
      offset: number;
      /** True when the requested offset fell out of the replay buffer: clear the screen first. */
      reset: boolean;
      /** Set when the terminal has already ended. */
      exited?: { code: number };
      /** The pty's size now (a read-only view sizes itself to it). */
      cols: number;
      rows: number;
    }
  | { ok: false; error: ProtocolError };

export interface TermOutput {
  term: string;
  /** Offset of data[0] in the terminal's output stream. */
  offset: number;
  data: Uint8Array;
}

export interface TermExit {
  term: string;
  code: number;
}

export type ErrorCode =
  | 'bad-request'
  | 'unknown-event'
  | 'unknown-terminal'
  | 'too-many-terminals'
  | 'terminal-ended'
  | 'input-overflow'
  | 'read-only'
  | 'sandbox-error'
  | 'unknown-step';

export interface ProtocolError {
  code: ErrorCode;
  message: string;
  /** The event that caused it, when there is one. */
  event?: string;
}

export type Ack<T> = (result: T) => void;

export interface ClientToServerEvents {
  'term:open': (req: TermOpen, ack: Ack<TermOpenResult>) => void;
  /** The ack fires once the pty has taken the data (input backpressure). */
  'term:input': (req: TermInput, ack?: Ack<{ ok: boolean }>) => void;
  'term:resize': (req: TermResize) => void;
  'term:ack': (req: TermAck) => void;
  'term:close': (req: TermClose) => void;
  'panel:watch': (req: PanelWatch) => void;
  'panel:unwatch': () => void;
}

export interface ServerToClientEvents {
  'term:output': (msg: TermOutput) => void;
  'term:exit': (msg: TermExit) => void;
  /** The session ended (its sandbox is gone); the server disconnects right after. */
  'session:ended': (msg: { reason: string }) => void;
  /** A terminal's pty was resized (sent to read-only views, which cannot fit themselves). */
  'term:size': (msg: { term: string; cols: number; rows: number }) => void;
  /**
   * How many instructor views watch this session now; sent to the session's
   * own sockets on connect and on every change (a student is told).
   */
  'session:watchers': (msg: { count: number }) => void;
  /** An instructor's notice to the class (text; show it as text). */
  'class:notice': (msg: ClassNotice) => void;
  'panel:data': (msg: PanelUpdate) => void;
  'proto:error': (err: ProtocolError) => void;
}

/** Validates a payload; returns the parsed value or a ProtocolError naming the field. */
export function parse<T>(
  schema: z.ZodType<T>,
  event: string,
  payload: unknown,
): { ok: true; value: T } | { ok: false; error: ProtocolError } {
  const r = schema.safeParse(payload);
  if (r.success) return { ok: true, value: r.data };
  const issue = r.error.issues[0];
  const where = issue && issue.path.length ? issue.path.join('.') : 'payload';
  return {
    ok: false,
    error: {
      code: 'bad-request',
      event,
      message: `${event}: ${where}: ${issue?.message ?? 'invalid'}`,
    },
  };
}

/** The REST side: POST /api/sessions answers with this. */
export interface SessionCreated {
  session: string;
  token: string;
  hostname: string;
}

// ---- the lab API (REST, JSON; the student is identified by a cookie) ---------

/** POST /api/labs/:lab/steps/:step/check */
export const CheckRequest = z.object({ answer: z.string().max(200).optional() }).strict();

/**
 * POST …/steps/<step>/skip. `apply`: also run the step's reference solution
 * in the sandbox, so later steps find what this one would have made.
 */
export const SkipRequest = z.object({ apply: z.boolean().optional() }).strict();
export type SkipRequest = z.infer<typeof SkipRequest>;

/** A skip's answer: the progress, and what applying the solution did (when asked). */
export interface SkipResponse extends LabProgress {
  applied?: { ok: boolean; output: string };
}
export type CheckRequest = z.infer<typeof CheckRequest>;

// ---- classes (cohorts; docs/classroom.md) ---------------------------------

/** POST /api/cohorts/join: a code (any case, dash optional) and the name the instructor sees. */
export const JoinRequest = z
  .object({ code: z.string().max(40), name: z.string().max(200) })
  .strict();
export type JoinRequest = z.infer<typeof JoinRequest>;

/** A class the student sits in. */
export interface Membership {
  cohort: string;
  /** The display name the student gave. */
  name: string;
  labs: string[];
  /** The instructor's latest notice to the class, if it is less than an hour old. */
  notice?: ClassNotice;
}

/** An instructor's short notice to everyone in a class (docs/classroom.md#notices). */
export interface ClassNotice {
  cohort: string;
  text: string;
  at: number;
}

/** POST /api/instructor/cohorts/<name>/notice (Bearer). */
export const NoticeRequest = z
  .object({ text: z.string().trim().min(1).max(LIMITS.noticeChars) })
  .strict();
export type NoticeRequest = z.infer<typeof NoticeRequest>;

/** POST /api/cohorts/join: 200 with the membership; `again` when the student had joined before. */
export interface Joined extends Membership {
  again: boolean;
  /**
   * This student's resume key: `/resume#<key>` opened in another browser
   * makes it the same student (POST /api/me/resume). A secret: it is them.
   */
  resume: string;
}

/** POST /api/me/resume: become the student of a resume key (this browser's cookie). */
export const ResumeRequest = z
  .object({
    key: z.string().min(1).max(200),
    /** Only say whose key it is (and who this browser is now); switch nothing. */
    preview: z.boolean().optional(),
  })
  .strict();

/** POST /api/me/resume with `preview`: what continuing would do, before the student agrees. */
export interface ResumePreview {
  /** The classes (and names) of the key's student. */
  cohorts: Membership[];
  /** This browser's student now, when they sit in a class: replaced if the student continues. */
  current?: { cohorts: Membership[] };
}
export type ResumeRequest = z.infer<typeof ResumeRequest>;

/** GET /api/me: the classes this browser's student sits in. */
export interface Me {
  cohorts: Membership[];
  /** This student's resume key, once they sit in a class (see Joined). */
  resume?: string;
}

/** One student's step, as the instructor sees it. */
export interface StepSummary {
  passed: boolean;
  skipped: boolean;
  attempts: number;
  hintsShown: number;
}

/**
 * GET /api/instructor/cohorts/<name> (Authorization: Bearer <instructor
 * token>): the roster × the labs' steps. Names are what students typed:
 * show them as text.
 */
export interface InstructorView {
  cohort: string;
  /** XXXX-XXXX */
  code: string;
  state: 'open' | 'not-yet-open' | 'ended' | 'closed';
  seats?: number;
  labs: { id: string; title: string; steps: { id: string; title: string }[] }[];
  students: {
    /** Opaque: addresses the student in the instructor routes below. */
    key: string;
    name: string;
    joined: number;
    /** lab id -> step id -> summary */
    progress: Record<string, Record<string, StepSummary>>;
    /**
     * lab id -> where the student is: the first step neither passed nor
     * skipped, since when (the last pass before it, else the first action
     * in the lab), and the last action. Absent for a lab not started.
     */
    at: Record<string, { step?: string; since?: number; last?: number }>;
  }[];
  /** The server's clock, for "for 12 min" on the page. */
  now: number;
  /**
   * Where the class's checks fail most: per step its most frequent failure
   * messages (at most 3), most frequent first. Messages are check output:
   * show them as text.
   */
  failing: {
    lab: string;
    step: string;
    message: string;
    count: number;
    students: number;
    /** The lab's near miss whose expected message this is (`nearMisses[].says`). */
    nearMiss?: string;
  }[];
  /** Per lab and step, from the recorded events: which step to explain again, or rewrite. */
  analytics: StepAnalytics[];
  /** The class's warm seats (cohorts.yaml `warm`), one entry per lab it asks seats of; absent if none. */
  warm?: ClassWarmSeats[];
}

/**
 * A class's warm seats of one lab (docs/operating.md#warm-seats):
 * sandboxes started ahead so its students' first start takes no time.
 */
export interface ClassWarmSeats {
  lab: string;
  /** What the class asks for (cohorts.yaml `warm`). */
  asked: number;
  /** Its students who have the lab (started, or a seat taken): each one uses a seat of `asked`. */
  have: number;
  /**
   * Seats the class wants kept now: `asked` less `have`; 0 outside its
   * window (from `from` until the class ends or is closed).
   */
  wanting: number;
  /** Seats of the lab ready on this host now (every class's and `serve --warm`'s together). */
  ready: number;
  /** A seat of the lab being started now (0 or 1). */
  preparing: number;
  /** When the class's seats are first made (15 minutes before it starts), if it starts at all. */
  from?: number;
}

/** How a class did on one step (docs/classroom.md#analytics). */
export interface StepAnalytics {
  lab: string;
  step: string;
  /** Students who acted in the lab at all. */
  started: number;
  /** ...of whom passed this step's check (a skip is not a pass). */
  passed: number;
  skipped: number;
  /** passed / started, 0..1 (0 when nobody started). */
  completion: number;
  /** Median ms from reaching the step (the previous pass, else the first action) to its pass. */
  medianMs?: number;
  /** Checks run by those who passed, per pass (1 = right the first time). */
  checksPerPass?: number;
  /** Students who were shown at least one hint here. */
  hinted: number;
}

/** GET /api/instructor/cohorts/<name>/students/<key> (Bearer): one student up close. */
export interface InstructorStudent {
  key: string;
  name: string;
  /**
   * Labs of the class with a live sandbox (the instructor may end or reset
   * it, and watch its terminals read-only: HandshakeAuth's `watch`).
   */
  live: { lab: string; terminals: { term: string; name: string; exited?: number }[] }[];
  /** Checks, hints, skips and resets, newest first (at most 50); messages are check output. */
  history: { at: number; lab: string; step: string; kind: string; message: string }[];
}

export interface ApiError {
  error: string;
  /** The named step that failed (sandbox errors), for the student and for us. */
  step?: string;
  hint?: string;
  /** Rate-limited (429) or host full (503): try again after this many ms (also Retry-After). */
  retryAfterMs?: number;
  /** Host full (503): the caller's place in line; keep asking to keep it. */
  queue?: { position: number };
}

export interface StepProgress {
  passed: boolean;
  skipped: boolean;
  /** The pass message (what the student read). */
  message: string;
  /**
   * What later steps see as $STEP_<id>_OUT when the check gave one
   * (`pass_value`, or a skip that applied the solution); else `message`.
   */
  value?: string;
  attempts: number;
  /** Hints actually shown (a press that showed nothing does not count). */
  hintsShown: number;
  /** Text hints revealed so far (they come one per press, in order). */
  textHintsShown?: number;
  /** What the state hints said last time they were shown (shown again only when it changes). */
  lastStateHint?: string;
  passedAt?: number;
}

export interface LabProgress {
  lab: string;
  /** Index of the first step neither passed nor skipped (= steps.length when done). */
  current: number;
  steps: Record<string, StepProgress>;
}

/** GET /api/labs: one card per lab. */
export interface LabCard {
  id: string;
  title: string;
  summary: string;
  duration: number;
  difficulty: 'beginner' | 'intermediate' | 'advanced';
  tags: string[];
  steps: number;
  /** False when this host cannot run the lab (reason says why). */
  available: boolean;
  reason?: string;
  /** Steps passed (a skip is not a pass), steps skipped, steps in all. */
  progress: { passed: number; skipped: number; total: number };
  /** Position on the learning path (the list comes in this order). */
  order?: number;
  /** Labs to do first, and whether this student has finished them. */
  requires: { id: string; title: string; done: boolean }[];
}

export interface LabList {
  labs: LabCard[];
  /** Validation problems (file:line:col) of labs that failed to load. */
  problems: string[];
  /**
   * Set when this student's labs are a class's (docs/classroom.md#a-students-labs):
   * the open classes they sit in; `labs` holds only those classes' labs. With
   * `classesOnly` and no class, `labs` is empty: join a class first.
   */
  scope?: { cohorts: string[]; classesOnly: boolean };
}

export interface StepView {
  id: string;
  title: string;
  /** Markdown; ```sh blocks with `terminal=NAME` run in that terminal. */
  instructions: string;
  predict?: { question: string; choices?: string[]; answer: string; correct?: string };
  /** A knowledge check: the answer goes with the check request. */
  input?: { prompt: string; placeholder?: string };
  hints: number;
  /** Live kernel-state panels to show beside the terminals (`panel:watch`). */
  panels?: PanelSpec[];
}

/** GET /api/labs/:lab */
export interface LabView {
  id: string;
  title: string;
  summary: string;
  duration: number;
  difficulty: LabCard['difficulty'];
  tags: string[];
  objectives: string[];
  terminals: string[];
  steps: StepView[];
  outro?: string;
  available: boolean;
  reason?: string;
  progress: LabProgress;
  /** The host's (and so the sandbox's) cgroup version: which variant of a step the student sees. */
  cgroup: 'v1' | 'v2';
  /** The next lab on the learning path, for the wrap-up. */
  next?: { id: string; title: string };
}

/** POST /api/labs/:lab/session: starts or resumes the student's sandbox for the lab. */
export interface LabSession extends SessionCreated {
  terminals: { term: string; name: string }[];
  /** Something the student should know, e.g. that the sandbox was recreated. */
  notice?: string;
  /** Milliseconds it took (sandbox start + lab setup; 0 when resumed). */
  startMs: number;
}

export interface CheckResponse {
  passed: boolean;
  latched: boolean;
  message: string;
  progress: LabProgress;
}

/**
 * A Hint press: the step's state hints are run again every time (what they
 * say reflects the sandbox now); when they say something new it is the
 * hint, otherwise the next text hint is revealed. `hint` absent: nothing
 * more to say now. `shown`/`total` count the text hints.
 */
export interface HintResponse {
  hint?: string;
  /** 'state': computed from the sandbox now; 'text': the lab's next written hint. */
  kind?: 'state' | 'text';
  shown: number;
  total: number;
  progress: LabProgress;
}
