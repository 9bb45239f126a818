/**
 * The `underlay` command line: sandbox run|ls|rm|reap, rootfs build|status,
 * doctor, validate, test, schema, cohort, serve. Errors print what failed, the named
 * step and a hint; exit codes: 0 ok, 1 usage error or refused request, 125
 * the sandbox itself failed, otherwise the command's own status (`sandbox
 * run`).
 *
 * Each command loads what it needs when it runs (`await import`): the web
 * server (Next.js, socket.io), SQLite and the native addon are costly to
 * load, and `underlay --version` or `validate` need none of them.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { DEFAULT_LIMITS, loadConfig, parseSize, parseWarm, REPO_LABS } from '../config';
import { SandboxError } from '../sandbox/errors';
import { RequestError } from '../util/errors';

/** A usage problem found inside an action (commander's own errors are printed by commander). */
export class UsageError extends Error {}

/** `--warm lab=N,...` (serve, cohort create, cohort set); a bad one is a usage error. */
function warmArg(v: unknown): Map<string, number> | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    return parseWarm(v, '--warm');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function sizeArg(name: string) {
  return (v: string): number => {
    const n = parseSize(v);
    if (n === undefined)
      throw new InvalidArgumentError(`${name} must be a size like 256M or 1G, got '${v}'`);
    return n;
  };
}

function intArg(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v))
      throw new InvalidArgumentError(`${name} must be a whole number, got '${v}'`);
    return Number(v);
  };
}

function numArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
    return n;
  };
}

async function manager() {
  const [{ SandboxManager }, { Store }] = await Promise.all([
    import('../sandbox/index'),
    import('../store/store'),
  ]);
  const config = loadConfig();
  return new SandboxManager({ config, store: new Store(config.stateDir) });
}

export function printError(err: unknown): void {
  if (err instanceof SandboxError) {
    process.stderr.write(`underlay: ${err.message}\n`);
    if (err.step)
      process.stderr.write(
        `  step: ${err.step}${err.syscall ? `  syscall: ${err.syscall}` : ''}${err.code ? `  code: ${err.code}` : ''}\n`,
      );
    if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
    return;
  }
  const e = err as Error;
  process.stderr.write(`underlay: ${e?.message ?? String(err)}\n`);
  if (err instanceof RequestError && err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new RequestError(
      'forbidden',
      'this command needs root on the host (it creates namespaces, mounts and cgroups)',
      { hint: 'run it as root (sudo, where it exists), or in the Vagrant VM' },
    );
  }
}

export function buildProgram(): Command {
  const program = new Command('underlay')
    .description('Learn how containers really work, on a real kernel.')
    .version('0.1.0')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)');

  const sandbox = program.command('sandbox').description('create, list and remove lab sandboxes');

  sandbox
    .command('run')
    .description('run CMD as root in a fresh sandbox, then tear it down')
    .option('--hostname <name>', 'hostname inside the sandbox', 'underlay')
    .option('--memory <size>', 'memory limit, e.g. 512M', sizeArg('--memory'))
    .option('--pids <n>', 'maximum number of processes', intArg('--pids'))
    .option('--cpus <n>', 'CPU bandwidth in CPUs, e.g. 0.5', numArg('--cpus'))
    .option('--scratch <size>', 'session disk size (/, /tmp, /lab), e.g. 2G', sizeArg('--scratch'))
    .option(
      '--disk-bps <size>',
      'session disk bandwidth per second, reads and writes each, e.g. 32M',
      sizeArg('--disk-bps'),
    )
    .option(
      '--disk-iops <n>',
      'session disk operations per second, each way',
      intArg('--disk-iops'),
    )
    .option('--user <name>', "run as 'root' (default) or 'learner' (uid 1000)", 'root')
    .option('-t, --tty', 'interactive terminal (default command: bash -i)')
    .option('--keep', 'leave the sandbox running afterwards (remove with `sandbox rm`)')
    .argument('[command...]', 'command and arguments, after --')
    .passThroughOptions()
    .action(async (command: string[], opts) => {
      if (!['root', 'learner'].includes(opts.user))
        throw new UsageError(`--user must be root or learner, got '${opts.user}'`);
      const argv = command.length > 0 ? command : opts.tty ? ['bash', '-i'] : [];
      if (argv.length === 0)
        throw new UsageError(
          'no command given: underlay sandbox run -- CMD [ARG...] (or -t for a shell)',
        );
      requireRoot();
      const { runInSandbox } = await import('./run');
      const code = await runInSandbox(await manager(), argv, {
        hostname: opts.hostname,
        limits: {
          ...(opts.memory !== undefined && { memoryBytes: opts.memory }),
          ...(opts.pids !== undefined && { pids: opts.pids }),
          ...(opts.cpus !== undefined && { cpus: opts.cpus }),
          ...(opts.scratch !== undefined && { scratchBytes: opts.scratch }),
          ...(opts.diskBps !== undefined && { diskBps: opts.diskBps }),
          ...(opts.diskIops !== undefined && { diskIops: opts.diskIops }),
        },
        tty: Boolean(opts.tty),
        keep: Boolean(opts.keep),
        uid: opts.user === 'learner' ? 1000 : 0,
      });
      process.exitCode = code;
    });

  sandbox
    .command('ls')
    .description('list sandboxes recorded in the state directory, and kept disks (parked sessions)')
    .option(
      '--json',
      'machine-readable output (sandboxes only: `sandbox disks --json` for the disks)',
    )
    .action(async (opts) => {
      requireRoot();
      const m = await manager();
      const rows = m.list();
      const disks = m.disks();
      if (opts.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      const parked = disks.filter((d) => !d.sandbox);
      if (disks.length > 0) {
        process.stdout.write(
          `${disks.length} kept disk(s), ${parked.length} parked (files kept, no sandbox):\n` +
            'STATE      OWNER                 NAME                  USED-ON-DISK  LAST USED\n',
        );
        for (const d of disks) {
          const state = d.sandbox ? `in ${d.sandbox}` : 'parked';
          process.stdout.write(
            `${state.padEnd(10)} ${d.owner.slice(0, 21).padEnd(21)} ${d.name.slice(0, 21).padEnd(21)} ${`${(d.usage / 1024 ** 2).toFixed(1)}M`.padEnd(13)} ${new Date(d.used).toISOString()}\n`,
          );
        }
        process.stdout.write('\n');
      }
      if (rows.length === 0) {
        process.stdout.write('no sandboxes\n');
        return;
      }
      process.stdout.write(
        'ID            STATE       INIT     HOST-ROOT  OWNER         CGROUP  HOSTNAME\n',
      );
      for (const r of rows) {
        const state = r.alive ? r.state : r.state === 'ready' ? 'dead' : r.state;
        const owner = `${r.ownerKind}:${r.ownerPid}${r.ownerAlive ? '' : '(gone)'}`;
        process.stdout.write(
          `${r.id.padEnd(13)} ${state.padEnd(11)} ${String(r.initPid ?? '-').padEnd(8)} ${String(r.uidBase).padEnd(10)} ${owner.padEnd(13)} ${r.resources.cgroupMode.padEnd(7)} ${r.hostname}\n`,
        );
      }
    });

  sandbox
    .command('disks')
    .description("kept session disks: students' lab files, parked or in use")
    .option('--json', 'machine-readable output')
    .option('--drop-parked', "drop every parked disk (those students' lab files are lost)")
    .action(async (opts) => {
      requireRoot();
      const m = await manager();
      if (opts.dropParked) {
        const parked = m.disks().filter((d) => !d.sandbox);
        for (const d of parked) m.dropDisk(d.owner, d.name);
        process.stdout.write(`dropped ${parked.length} parked disk(s)\n`);
        return;
      }
      const disks = m.disks();
      if (opts.json) {
        process.stdout.write(JSON.stringify(disks, null, 2) + '\n');
        return;
      }
      process.stdout.write(disks.length ? '' : 'no kept disks\n');
      for (const d of disks)
        process.stdout.write(
          `${d.id}  ${d.sandbox ? `in ${d.sandbox}` : 'parked'}  ${d.owner}  ${d.name}  ${(d.usage / 1024 ** 2).toFixed(1)}M of ${(d.bytes / 1024 ** 2).toFixed(0)}M\n`,
        );
      // What admission sees (docs/sandbox.md#the-host-disk).
      const room = m.hostDiskRoom();
      if (room) {
        const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)}G`;
        const disk = DEFAULT_LIMITS.scratchBytes;
        const more = Math.max(0, Math.floor((room.free - room.growth - room.reserve) / disk));
        process.stdout.write(
          `host disk: ${gib(room.free)} free of ${gib(room.size)}; the ${room.live} live session disk(s) may still take ${gib(room.growth)}, ` +
            `${gib(room.reserve)} kept in reserve: room for ${more} more session(s) of ${disk / 1024 ** 2}M\n`,
        );
      }
    });

  sandbox
    .command('rm')
    .description('tear down sandboxes by id (kills everything in them)')
    .argument('<id...>')
    .action(async (ids: string[]) => {
      requireRoot();
      const m = await manager();
      for (const id of ids) {
        await m.destroy(id);
        process.stdout.write(`removed ${id}\n`);
      }
    });

  sandbox
    .command('reap')
    .description('tear down sandboxes whose CLI or server process is gone')
    .option('--all', 'tear down every sandbox, live owners included')
    .action(async (opts) => {
      requireRoot();
      const m = await manager();
      const { reaped, failed } = await m.reap({ all: Boolean(opts.all) });
      process.stdout.write(
        reaped.length ? `reaped ${reaped.length}: ${reaped.join(' ')}\n` : 'nothing to reap\n',
      );
      if (failed.length) {
        // Quarantined: kept as 'destroying' and retried by the next reap or server start.
        for (const id of failed)
          process.stderr.write(
            `underlay: could not tear down ${id}: ${m.store.get(id)?.lastError ?? 'unknown error'}\n`,
          );
        process.stderr.write(
          `  hint: ${failed.length} sandbox(es) kept as 'destroying'; fix the cause and run \`underlay sandbox reap\` again\n`,
        );
        process.exitCode = 1;
      }
    });

  const rootfs = program.command('rootfs').description('the base image sandboxes start from');
  rootfs
    .command('build')
    .description(
      "debootstrap the host's own distribution (minbase + lab tools); built once, reused",
    )
    .option('--force', 'rebuild even if the current recipe is already built')
    .option('--quiet', 'no progress output')
    .option(
      '--labs [path]',
      "also build the images of labs that add packages (sandbox.packages); default path: the repository's labs/",
    )
    .action(async (opts) => {
      requireRoot();
      const config = loadConfig();
      const { buildImage, findImage, hostDistro } = await import('../sandbox/index');
      const { loadLabs } = await import('../labs/loader');
      // The base image, then one image per distinct extra package set of the labs.
      const sets: string[][] = [[]];
      if (opts.labs) {
        const { labs } = loadLabs([typeof opts.labs === 'string' ? opts.labs : REPO_LABS]);
        for (const l of labs) if (l.lab.sandbox.packages.length) sets.push(l.lab.sandbox.packages);
      }
      const d = hostDistro();
      const seen = new Set<string>();
      for (const extra of sets) {
        const what = extra.length ? `image with ${extra.join(', ')}` : 'base image';
        if (seen.has(what)) continue;
        seen.add(what);
        const existing = findImage(config.imagesDir, d, extra);
        if (existing && !opts.force) {
          process.stdout.write(`${what} ${existing.id} is up to date (${existing.rootfs})\n`);
          continue;
        }
        process.stdout.write(`building ${what} for ${d.id} ${d.codename}/${d.arch} ...\n`);
        const info = await buildImage(config.imagesDir, {
          force: Boolean(opts.force),
          extra,
          onLine: opts.quiet ? () => {} : (l) => process.stdout.write(`  ${l}\n`),
        });
        process.stdout.write(`built ${what} ${info.id} in ${info.buildSeconds}s: ${info.rootfs}\n`);
      }
    });
  rootfs
    .command('status')
    .description('show the base image for this host, if built')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const { findImage } = await import('../sandbox/index');
      const img = findImage(loadConfig().imagesDir);
      if (opts.json) process.stdout.write(JSON.stringify(img ?? null) + '\n');
      else
        process.stdout.write(
          img
            ? `${img.id} ${img.suite}/${img.arch} built ${img.builtAt}: ${img.rootfs}\n`
            : 'no base image: run `underlay rootfs build`\n',
        );
      if (!img) process.exitCode = 1;
    });

  const cohort = program
    .command('cohort')
    .description('classes: students join a set of labs with a code (docs/classroom.md)');
  cohort
    .command('create')
    .description('make a cohort; prints the join link and code, and the instructor link once')
    .argument('<name>', "lower-case letters, digits and '-'")
    .requiredOption('--labs <ids>', 'comma-separated lab ids, e.g. ns-uts-ipc,cg-cpu-quota')
    .option('--starts <date>', 'joins accepted from then (ISO date/time)')
    .option('--ends <date>', 'joins refused from then (ISO date/time)')
    .option('--seats <n>', 'at most N students', intArg('--seats'))
    .option(
      '--warm <lab=N,...>',
      'keep N sandboxes of a lab of the class started ahead, from 15 minutes before it starts (docs/operating.md#warm-seats)',
    )
    .option('--url <url>', 'the address students open', 'http://localhost:3000')
    .action(async (name: string, opts) => {
      const { create, parseWhen } = await import('./cohort');
      const warm = warmArg(opts.warm);
      create(
        {
          name,
          labs: String(opts.labs)
            .split(',')
            .map((l) => l.trim())
            .filter(Boolean),
          ...(opts.starts !== undefined && { starts: parseWhen('--starts', opts.starts) }),
          ...(opts.ends !== undefined && { ends: parseWhen('--ends', opts.ends) }),
          ...(opts.seats !== undefined && { seats: opts.seats }),
          ...(warm && { warm: Object.fromEntries(warm) }),
        },
        opts.url,
      );
    });
  cohort
    .command('list')
    .description('every cohort: code, state, seats taken, labs')
    .action(async () => (await import('./cohort')).list());
  cohort
    .command('show')
    .description("one cohort's details and its students")
    .argument('<name>')
    .action(async (name: string) => (await import('./cohort')).show(name));
  cohort
    .command('export')
    .description('progress per student and step, for a gradebook (CSV or JSON)')
    .argument('<name>')
    .option('--format <fmt>', 'csv | json', 'csv')
    .option('--what <what>', 'progress (per student and step) | analytics (per step)', 'progress')
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .action(async (name: string, opts) =>
      (await import('./cohort')).exportCohort(name, opts.format, opts.output, opts.what),
    );
  cohort
    .command('token')
    .description('a new instructor token, and the sha256 a cohorts.yaml declares for it')
    .action(async () => (await import('./cohort')).token());
  cohort
    .command('sync')
    .description("apply the labs folder's cohorts.yaml to the store (serve does it at start)")
    .option('--file <file>', 'another cohorts file')
    .option('--url <url>', 'the address students open', 'http://localhost:3000')
    .action(async (opts) => (await import('./cohort')).sync(opts.file, opts.url));
  cohort
    .command('set')
    .description(
      'change a cohort made with `cohort create`: seats, window, warm seats, or a new join code',
    )
    .argument('<name>')
    .option('--seats <n>', 'at most N students', intArg('--seats'))
    .option('--starts <date>', 'joins accepted from then (ISO date/time)')
    .option('--ends <date>', 'joins refused from then (ISO date/time)')
    .option('--warm <lab=N,...>', 'warm seats per lab of the class (replaces the old ones)')
    .option('--new-code', 'a new join code; the old one is refused from now on')
    .option('--url <url>', 'the address students open', 'http://localhost:3000')
    .action(async (name: string, opts) => {
      const { set, parseWhen } = await import('./cohort');
      const warm = warmArg(opts.warm);
      if (
        opts.seats === undefined &&
        opts.starts === undefined &&
        opts.ends === undefined &&
        !warm &&
        !opts.newCode
      )
        throw new UsageError(
          'nothing to change: give --seats, --starts, --ends, --warm or --new-code',
        );
      set(
        name,
        {
          ...(opts.seats !== undefined && { seats: opts.seats }),
          ...(opts.starts !== undefined && { starts: parseWhen('--starts', opts.starts) }),
          ...(opts.ends !== undefined && { ends: parseWhen('--ends', opts.ends) }),
          ...(warm && { warm: Object.fromEntries(warm) }),
          ...(opts.newCode && { newCode: true }),
        },
        opts.url,
      );
    });
  cohort
    .command('close')
    .description('refuse new joins (students keep their progress)')
    .argument('<name>')
    .action(async (name: string) => (await import('./cohort')).close(name));

  program
    .command('validate')
    .description('check lab files: every problem with file:line:col, the field and a fix')
    .argument('[paths...]', 'lab folders, or folders of labs (default: labs/)')
    .action(async (paths: string[]) => {
      const { validate } = await import('./validate');
      process.exitCode = validate(paths);
    });

  program
    .command('test')
    .description(
      'run labs end to end: each check must fail before, fail after each near miss, pass after the solution',
    )
    .argument('[paths...]', 'lab folders, or folders of labs (default: labs/)')
    .option('--reporter <name>', 'pretty | tap | junit', 'pretty')
    .option('--repeat <n>', 'run every lab N times (catches flaky checks)', intArg('--repeat'), 1)
    .option('--only <lab[/step]>', 'one lab, or one step of it (earlier steps are solved first)')
    .option('-o, --output <file>', 'write the report to a file')
    .option('--junit <file>', 'also write a JUnit report of the same run to a file')
    .option(
      '--walkthrough',
      "instead: type each step's code blocks into the lab's terminals, as a student would, then check",
    )
    .action(async (paths: string[], opts) => {
      if (!['pretty', 'tap', 'junit'].includes(opts.reporter))
        throw new UsageError(`--reporter must be pretty, tap or junit, got '${opts.reporter}'`);
      if (opts.repeat < 1) throw new UsageError('--repeat must be at least 1');
      requireRoot();
      const { test } = await import('./labs');
      process.exitCode = await test(paths, opts);
    });

  program
    .command('schema')
    .description('write labs/lab.schema.json from the lab format (the editor schema)')
    .option('--check', 'fail if the committed file is stale')
    .action(async (opts) => {
      const { schema } = await import('./validate');
      process.exitCode = schema({ check: Boolean(opts.check) });
    });

  program
    .command('doctor')
    .description('check that this host can run sandboxes, and say how to fix what it lacks')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const { runDoctor } = await import('./doctor');
      process.exitCode = await runDoctor({ json: Boolean(opts.json) });
    });

  program
    .command('serve')
    .description('serve the lab web app and API')
    .option('--port <n>', 'TCP port', intArg('--port'), 3000)
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option(
      '--dev',
      'reload labs when their files change, serving validation errors instead of failing',
    )
    .option(
      '--labs <dir>',
      "serve the labs in DIR (a folder of labs, or one lab folder) instead of the repository's",
    )
    .option(
      '--warm <lab=N,...>',
      'keep N sandboxes of each lab started ahead, for students to take at once (UNDERLAY_WARM)',
    )
    .action(async (opts) => {
      requireRoot();
      const warm = warmArg(opts.warm);
      const { serve } = await import('./serve');
      await serve({
        port: opts.port,
        host: opts.host,
        dev: Boolean(opts.dev),
        labs: typeof opts.labs === 'string' ? opts.labs : undefined,
        ...(warm ? { warm } : {}),
      });
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`underlay: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    printError(err);
    // 125 (as docker run) only when a sandbox itself failed; a refused
    // request or a failed image build is an ordinary error.
    process.exitCode = err instanceof SandboxError && err.step && err.step !== 'image' ? 125 : 1;
  }
}
