/**
 * The lab format, version underlay.dev/v1: the single source of truth.
 * `underlay schema` writes labs/lab.schema.json from it for editors
 * (yaml-language-server completion and hover use the descriptions).
 */
import { z } from 'zod';
import { PanelSpec } from '../protocol/index';

export const API_VERSION = 'underlay.dev/v1';

const id = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{0,62}$/,
    'lower-case letters, digits and dashes, starting with a letter or digit',
  );

const script = z
  .string()
  .min(1)
  .describe('A POSIX shell script, run with bash as root inside the sandbox.');

const markdown = z.string().min(1);

export const Hint = z
  .union([
    z.object({ text: markdown.describe('A static hint, shown as written.') }).strict(),
    z
      .object({
        script: script.describe(
          'A state-based hint: runs like a check; whatever it prints (if anything) is shown. Point at what is wrong, never give the command.',
        ),
      })
      .strict(),
  ])
  .describe('A hint, revealed one at a time on request.');

export const NearMiss = z
  .object({
    name: z
      .string()
      .min(1)
      .describe('What plausible mistake this is, e.g. "cap_net_admin instead of cap_net_raw".'),
    script: script.describe(
      'Applies the mistake. The check must still FAIL afterwards (underlay test proves it).',
    ),
    says: z
      .string()
      .min(3)
      .max(200)
      .optional()
      .describe(
        "A fragment of the check's failure message in this state (case-insensitive). underlay test fails if the check says something else; the instructor dashboard names this near miss next to failures that say it.",
      ),
  })
  .strict();

const Check = z
  .object({
    script: script.describe(
      'Exit 0 = pass; the last line of stdout is the message shown. It may read $STEP_<id>_OUT (the message of an earlier passed step) and the helpers of the check library.',
    ),
    timeout: z
      .number()
      .int()
      .min(1)
      .max(300)
      .default(10)
      .describe('Seconds before the check is killed and fails (default 10).'),
    input: z
      .object({
        prompt: z.string().min(1).describe('The question, e.g. "The inode of your UTS namespace?"'),
        placeholder: z.string().optional(),
      })
      .strict()
      .optional()
      .describe(
        'A knowledge check: the student types an answer, the script gets it as $ANSWER and compares it with kernel state. For `underlay test`, the last stdout line of the solution (or a near miss) is the answer given.',
      ),
  })
  .strict();

const Predict = z
  .object({
    question: markdown.describe('Asked before the student runs anything: what do you expect?'),
    choices: z
      .array(z.string().min(1))
      .min(2)
      .optional()
      .describe('Options to pick from; without them the student types a guess.'),
    answer: markdown.describe('Revealed once the student has committed to a guess.'),
    correct: z
      .string()
      .min(1)
      .optional()
      .describe('The right one of `choices`: the reveal then says whether the pick was right.'),
  })
  .strict()
  .describe('A "predict first" question shown above the instructions.');

const StepBody = {
  instructions: markdown
    .optional()
    .describe(
      'Markdown shown to the student. ```sh blocks get Run (types into the terminal) and Copy buttons.',
    ),
  instructionsFile: z
    .string()
    .optional()
    .describe('Markdown file, relative to the lab folder, instead of `instructions`.'),
  predict: Predict.optional(),
  check: Check.optional(),
  solution: script
    .optional()
    .describe(
      'The reference solution. Applied by `underlay test` after which the check must pass.',
    ),
  nearMisses: z.array(NearMiss).default([]).describe('Plausible wrong answers that must not pass.'),
  hints: z.array(Hint).default([]).describe('Hints in the order they are revealed.'),
  panels: z
    .array(PanelSpec)
    .max(4)
    .default([])
    .describe('Live kernel-state panels shown beside the terminals while the step is open.'),
};

export const Variant = z.object(StepBody).strict().describe('Overrides for one cgroup version.');

export const Step = z
  .object({
    id: id.describe(
      'Unique within the lab; names $STEP_<id>_OUT for later steps (dashes become underscores).',
    ),
    title: z.string().min(1).describe('Short title shown in the step list.'),
    ...StepBody,
    variants: z
      .object({ v1: Variant.optional(), v2: Variant.optional() })
      .strict()
      .optional()
      .describe("Per cgroup version overrides, chosen by the host's cgroup mode."),
  })
  .strict();

export const Lab = z
  .object({
    $schema: z.string().optional(),
    apiVersion: z.literal(API_VERSION).describe(`Format version; must be ${API_VERSION}.`),
    kind: z.literal('Lab'),
    metadata: z
      .object({
        id: id.describe('Unique lab id; also the URL (/labs/<id>).'),
        title: z.string().min(1),
        summary: z.string().min(1).describe('One or two sentences for the catalog card.'),
        duration: z.number().int().min(1).max(600).describe('Estimated minutes.'),
        difficulty: z.enum(['beginner', 'intermediate', 'advanced']),
        tags: z.array(z.string().min(1)).default([]),
        objectives: z
          .array(z.string().min(1))
          .default([])
          .describe('What the student can explain afterwards.'),
        order: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe(
            'Position on the learning path: the catalog lists labs by it (then by title), labs without one last, and a finished lab offers the next.',
          ),
        requires: z
          .array(id)
          .default([])
          .describe('Labs to do first (ids): shown on the card; validate checks they exist.'),
        listed: z
          .boolean()
          .default(true)
          .describe(
            'false: left out of the student catalog (an example, a draft); still at /labs/<id> and tested.',
          ),
      })
      .strict(),
    requires: z
      .object({
        cgroup: z
          .enum(['any', 'v1', 'v2'])
          .default('any')
          .describe('Host cgroup mode the lab needs.'),
        kernel: z
          .string()
          .regex(/^\d+\.\d+$/, 'a version like 5.11')
          .optional()
          .describe('Minimum kernel version.'),
      })
      .strict()
      .default({ cgroup: 'any' }),
    sandbox: z
      .object({
        hostname: z
          .string()
          .regex(/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/)
          .default('lab'),
        memory: z.string().optional().describe('Memory limit, e.g. 512M.'),
        pids: z.number().int().min(8).optional(),
        cpus: z.number().positive().optional(),
        packages: z
          .array(z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, 'a Debian package name'))
          .default([])
          .describe(
            'Debian packages layered on the base image (an image of its own, built by `underlay rootfs build --labs`).',
          ),
        files: z
          .array(
            z
              .object({
                from: z
                  .string()
                  .min(1)
                  .describe('A file or folder in the lab folder, e.g. files/layers.'),
                to: z
                  .string()
                  .regex(/^\/[^\0]*$/, 'an absolute path in the sandbox')
                  .describe('Where it lands in the sandbox (folders are copied recursively).'),
                mode: z
                  .string()
                  .regex(/^[0-7]{3,4}$/, 'an octal mode like 0755')
                  .optional()
                  .describe('File mode for copied files (default: kept from the lab folder).'),
              })
              .strict(),
          )
          .default([])
          .describe(
            'Extra files layered on the base image before setup runs (at most 8 MiB in all).',
          ),
        terminals: z
          .array(z.object({ name: z.string().min(1).max(32) }).strict())
          .min(1)
          .default([{ name: 'T1' }])
          .describe('Named terminals opened when the lab starts.'),
      })
      .strict()
      .default({ hostname: 'lab', packages: [], files: [], terminals: [{ name: 'T1' }] }),
    setup: script.optional().describe('Runs once in a fresh sandbox before the first step.'),
    lib: script
      .optional()
      .describe(
        "Bash the lab's scripts share (functions, variables): sourced after the check library and before every setup, check, hint, near miss and solution.",
      ),
    steps: z.array(Step).min(1),
    outro: markdown.optional().describe('Shown after the last step: what Docker does with this.'),
  })
  .strict();

export type Lab = z.infer<typeof Lab>;
export type Step = z.infer<typeof Step>;

/** JSON Schema for editors, generated from the zod schema. */
export function labJsonSchema(): Record<string, unknown> {
  return {
    ...(z.toJSONSchema(Lab, { io: 'input' }) as Record<string, unknown>),
    $id: 'https://underlay.dev/schemas/lab.v1.json',
    title: 'Underlay lab (lab.yaml)',
  };
}
