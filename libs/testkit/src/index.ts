export { freePort } from './ports.js';
export { ManagedProcess, findProgram, waitForPort, type ManagedProcessOptions } from './process.js';
