export { COMMANDS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, helpText, run, type CliIo } from './cli.js';
