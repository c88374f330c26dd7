#!/usr/bin/env node
/**
 * The `omnibal` command line. Results go to stdout, messages to stderr; a usage error or bad
 * input exits with code 2 and one line naming the flag as typed, an internal failure with 1.
 *
 * @module
 */
import { Command, CommanderError, InvalidArgumentError, type Option } from 'commander';
import { isOmnibalError } from '../errors';
import { version } from '../package';
import { doctorReport, formatDoctor } from './doctor';
import { writeStdout } from './output';
import { registerPack } from './pack';
import { registerPartition } from './partition';
import { registerPlan } from './plan';
import { registerServe } from './serve';

/** Builds the program (exported so tests can drive it in-process). */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('omnibal')
    .description(
      'Balance vision-language model training: data across ranks, layers across pipeline stages, recomputation per stage.',
    )
    .version(version, '-v, --version')
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  program
    .command('doctor')
    .description('report the backend (native or js), the binary, the platform, Node and N-API versions')
    .option('--json', 'print one JSON object')
    .action((options: { json?: boolean }) => {
      const report = doctorReport();
      return writeStdout(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctor(report)}\n`);
    });

  registerPack(program);
  registerPartition(program);
  registerPlan(program);
  registerServe(program);
  return program;
}

/**
 * API names that a flag's value is validated under when they differ from the flag's own
 * attribute name (`--synthetic <n>` is checked as `n` by `syntheticSamples`, `--pp` as the stage
 * problem's `stages`, `--memory-gib` as its `memoryBytes`).
 */
const API_NAMES: Record<string, readonly string[]> = {
  '--synthetic': ['n'],
  '--pp': ['stages'],
  '--memory-gib': ['memoryBytes'],
};

/**
 * For a command with `--memory-gib`: a "least memory that fits" in bytes is said in GiB and
 * named as the flag to give (`... is 32.31 GiB (rounded up): --memory-gib 32.31`), and the memory
 * that did not fit in GiB too.
 */
export function namingMemoryFlag(message: string, command: Command | undefined): string {
  // The memory that did not fit, in GiB as every other memory figure (the interleaved search's message too).
  message = message.replace(/\bfits in ([\d.]+(?:e[-+]?\d+)?) bytes per GPU/, (_, n: string) => {
    const gib = Number(n) / 2 ** 30;
    return `fits in ${gib >= 0.01 ? gib.toFixed(2) : gib.toPrecision(3)} GiB per GPU`;
  });
  // At the end, or before a clause the planner added (the over-cap samples that raise the bound, say).
  const least = /the least memory that fits is \d+ bytes \(([\d.]+) GiB, rounded up\)(?=;|$)/.exec(message);
  if (least && command && (command.options as readonly Option[]).some((o) => o.long === '--memory-gib')) {
    return message.replace(least[0], `the least memory that fits is ${least[1]} GiB (rounded up): --memory-gib ${least[1]}`);
  }
  return message.replace(/ \d+ bytes \(([\d.]+) GiB, rounded up\)/g, ' $1 GiB (rounded up)');
}

/**
 * Rewrites the API option names in an error message into the flags the user typed
 * (`samplesPerPack` -> `--samples-per-pack`), for the command that ran. camelCase names are
 * rewritten anywhere outside quotes; one-word names (`dp`, `seed`, `n`) only where the message
 * starts with them, which is where the validators put the argument's name, and right after a
 * rewritten flag joined by `x`, `and`, `or` or a comma (`tp x pp`, `maxVision and maxText`).
 * A message led by a file or place (`cal.json: ...`, `data.csv:12: ...`) keeps it as written.
 */
export function namingFlags(message: string, command: Command | undefined): string {
  if (!command) return message;
  // The rest goes behind an empty quoted part: nothing is at its start, so only camelCase names are rewritten.
  const place = /^[^\s"]+?: /.exec(message)?.[0];
  if (place) return place + namingFlags(`""${message.slice(place.length)}`, command).slice(2);
  const flags = new Map<string, string>();
  for (const option of command.options as readonly Option[]) {
    if (!option.long) continue;
    flags.set(option.attributeName(), option.long);
    for (const alias of API_NAMES[option.long] ?? []) flags.set(alias, option.long);
  }
  // A dotted API path where the message starts (`cluster.dp must be ...`): the flag of its last name.
  // Not a file name leading its error (`data.json:1: ...`, `plan.json: cannot write`), nor a path that
  // starts at a flag (`calibration.layers[0].index`: a field of the --calibration file).
  const dotted = /^([A-Za-z]\w*)\.(?:[A-Za-z]\w*\.)*([A-Za-z]\w*)(?![\w.:/-])/.exec(message);
  const root = dotted ? flags.get(dotted[1]) : undefined;
  const leading = dotted && !root ? flags.get(dotted[2]) : undefined;
  if (root) message = root + message.slice(dotted![1].length);
  else if (dotted && leading) message = leading + message.slice(dotted[0].length);
  return message
    .split(/("[^"]*")/)
    .map((part, i) => {
      if (i % 2 === 1) return part;
      let out = '';
      let last = 0;
      // A word inside a file name (`maxText.jsonl`, `data.json`) is left as it is.
      for (const match of part.matchAll(/(?<![\w.-])[A-Za-z][A-Za-z0-9]*(?![\w-]|\.\w)/g)) {
        const word = match[0];
        out += part.slice(last, match.index);
        last = match.index + word.length;
        const flag = flags.get(word);
        const named = /[A-Z]/.test(word) || (i === 0 && match.index === 0) || /--[\w-]+(?: x | and | or |, )$/.test(out);
        out += flag && named ? flag : word;
      }
      return out + part.slice(last);
    })
    .join('');
}

/**
 * Gives `command` and its subcommands the CLI's usage-error convention: commander's own errors
 * (unknown option or command, missing argument, a value that is not a number) are thrown, not
 * exited on, and print one line instead of the help text. Help and version text goes to
 * `writeOut`.
 */
function oneLineUsageErrors(command: Command, writeOut: (text: string) => void): void {
  command
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({
      writeOut,
      writeErr: (text) => process.stderr.write(text),
      outputError: (text, write) => {
        const line = text.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').replace(/\.$/, '');
        const path = [];
        for (let c: Command | null = command; c; c = c.parent) path.unshift(c.name());
        write(`omnibal: ${line}; see ${path.join(' ')} --help [ERR_OMNIBAL_INVALID_OPTIONS]\n`);
      },
    });
  // Commander checks required options before unknown ones, so a typo (`--dpp 8`) would be
  // reported as the missing flag it was meant to be: name the unknown flag the user typed first.
  const checked = command as Command & { missingMandatoryOptionValue(option: Option): void; unknownOption(flag: string): void };
  const missing = checked.missingMandatoryOptionValue.bind(checked);
  checked.missingMandatoryOptionValue = (option: Option) => {
    const typed = command.args.find((arg) => arg.length > 1 && arg.startsWith('-'));
    if (typed !== undefined) checked.unknownOption(typed);
    missing(option);
  };
  for (const option of command.options as Option[]) {
    const parse = option.parseArg;
    // Every value flag: an empty value (`--out ''`) is a usage error naming the flag, never "not given".
    if (!parse && option.required && !option.variadic) {
      option.parseArg = <T>(value: string): T => {
        if (value === '') throw new InvalidArgumentError('Expected a value, got an empty string');
        return value as T;
      };
      continue;
    }
    if (!parse) continue;
    // Number-valued flags: a value that is not a number is a usage error naming the flag.
    option.parseArg = <T>(value: string, previous: T): T => {
      // `--dp ''` is an empty value, not 0 (Number('') is 0).
      if (value.trim() === '') throw new InvalidArgumentError('Expected a value, got an empty string');
      const parsed = parse<T>(value, previous);
      if (typeof parsed === 'number' && Number.isNaN(parsed)) throw new InvalidArgumentError('Expected a number');
      return parsed;
    };
  }
  for (const sub of command.commands) oneLineUsageErrors(sub, writeOut);
}

/** Runs the CLI on `argv` (as `process.argv`); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  // A message that cannot be written (stderr on a full device or a closed pipe) is lost, but the
  // exit code still says what happened (2 for a usage error), not 1 from an unhandled 'error'.
  if (process.stderr.listenerCount('error') === 0) process.stderr.on('error', () => undefined);
  const program = buildProgram();
  // Help and version text through the CLI's one stdout writer: a reader gone (EPIPE) ends it
  // quietly, a failed write (a full device) is an ERR_OMNIBAL_OUTPUT line with exit 2, never
  // commander's own write failing with a stack trace.
  const helpWrites: Promise<void>[] = [];
  oneLineUsageErrors(program, (text) => {
    helpWrites.push(writeStdout(text));
  });
  let running: Command | undefined;
  program.hook('preAction', (_program, action) => {
    running = action;
  });
  if (argv.length <= 2) {
    process.stderr.write(`omnibal: give a command: ${program.commands.map((c) => c.name()).join(', ')}; see omnibal --help [ERR_OMNIBAL_INVALID_OPTIONS]\n`);
    return 2;
  }
  // `help NAME` for no such command: commander prints the general help and fails with no word of why.
  if (argv[2] === 'help' && argv[3] !== undefined && !program.commands.some((c) => c.name() === argv[3])) {
    process.stderr.write(`omnibal: help: unknown command ${JSON.stringify(argv[3])}: give one of ${program.commands.map((c) => c.name()).join(', ')}; see omnibal --help [ERR_OMNIBAL_INVALID_OPTIONS]\n`);
    return 2;
  }
  try {
    try {
      await program.parseAsync(argv);
    } catch (error) {
      // Help and version end the parse with exit code 0; their text may still be on its way.
      if (!(error instanceof CommanderError && error.exitCode === 0)) throw error;
    }
    await Promise.all(helpWrites);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit with 0; usage errors (printed on one line above) with 2.
      return error.exitCode === 0 ? 0 : 2;
    }
    if (isOmnibalError(error)) {
      process.stderr.write(`omnibal: ${namingFlags(namingMemoryFlag(error.message, running), running)} [${error.code}]\n`);
      return error.code === 'ERR_OMNIBAL_PANIC' ? 1 : 2;
    }
    process.stderr.write(`omnibal: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
