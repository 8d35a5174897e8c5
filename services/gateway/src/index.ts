export { startGateway, LIVE_GATEWAY_SETTINGS, type Gateway, type LiveGatewaySettings } from './server.js';
export {
  DEFAULT_GATEWAY_SETTINGS,
  type GatewaySettings,
  type GatewayDeps,
  type PlaintextAuthPolicy,
  type ListenAddress,
} from './settings.js';
export { isLoopback, plaintextAllowed } from './connection.js';
export { parseProxyHeader, trustedNetworks, isTrusted, type ProxyParse, type ProxiedAddress } from './proxy-protocol.js';
