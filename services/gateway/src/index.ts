export { startGateway, type Gateway } from './server.js';
export {
  DEFAULT_GATEWAY_SETTINGS,
  type GatewaySettings,
  type GatewayDeps,
  type PlaintextAuthPolicy,
  type ListenAddress,
} from './settings.js';
export { isLoopback, plaintextAllowed } from './connection.js';
