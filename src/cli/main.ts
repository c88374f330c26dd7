#!/usr/bin/env node
/**
 * The `omnibal` command line. Results go to stdout, messages to stderr; a usage error or bad
 * input exits with code 2, an internal failure with 1.
 *
 * @module
 */
import { Command, CommanderError } from 'commander';
import { isOmnibalError } from '../errors';
import { version } from '../package';
import { doctorReport, formatDoctor } from './doctor';
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
    .showHelpAfterError()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  program
    .command('doctor')
    .description('report the backend (native or js), the binary, the platform, Node and N-API versions')
    .option('--json', 'print one JSON object')
    .action((options: { json?: boolean }) => {
      const report = doctorReport();
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctor(report)}\n`);
    });

  registerPack(program);
  registerPartition(program);
  registerPlan(program);
  registerServe(program);
  return program;
}

/** Runs the CLI on `argv` (as `process.argv`); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit with 0; usage errors (already printed by commander) with 2.
      return error.exitCode === 0 ? 0 : 2;
    }
    if (isOmnibalError(error)) {
      process.stderr.write(`omnibal: ${error.message} [${error.code}]\n`);
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
