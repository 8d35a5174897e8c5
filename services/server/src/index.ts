export { startServer, prepareTls, gatewaySettings, type RunningServer, type StartOptions } from './app.js';
export { loadServerConfig, serverSchema, type ServerConfig } from './config.js';
export { openBackends, type Backends } from './backends.js';
