export { startServer, type RunningServer } from './app.js';
export { loadServerConfig, serverSchema, type ServerConfig } from './config.js';
