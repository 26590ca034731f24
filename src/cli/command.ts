/**
 * Shared commander wiring for the `wiremesh <name>` commands (DESIGN.md "CLI": flag parsing and wiring only): a
 * Command that throws instead of calling process.exit and writes help/errors to the process streams, and the exit
 * status for what commander threw. Not a command itself (src/cli/main.ts dispatches from its own table).
 */
import { Command, CommanderError } from 'commander';

/** A commander program named `name` that throws CommanderError instead of exiting. */
export function cliCommand(name: string): Command {
  return new Command(name)
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });
}

/**
 * The exit status for an error thrown while commander parsed argv: 0 after --help/--version output, 2 for a usage
 * error (commander has already printed it); null when `e` did not come from commander.
 */
export function commanderStatus(e: unknown): number | null {
  return e instanceof CommanderError ? (e.exitCode === 0 ? 0 : 2) : null;
}
