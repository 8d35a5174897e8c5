export * from './pop3-client.js';
export * from './generator.js';
export * from './mailgen.js';
export * from './dovecot.js';
export * from './procstat.js';
export * from './server-process.js';
