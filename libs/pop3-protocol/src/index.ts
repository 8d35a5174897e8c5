export { LineReader, type LineEvent } from './line-reader.js';
export { DotStuffer, dotStuffAll } from './dot-stuff.js';
export { parseCommand, parseDecimal, type Command, type CommandName, type ParseResult } from './commands.js';
export {
  step,
  initialState,
  greeting,
  capabilities,
  usableMechanisms,
  resolveMessageNumber,
  expiredAtQuit,
  decodeBase64,
  ok,
  err,
  type MessageInfo,
  type RespCode,
  type SaslMechanism,
  type SessionConfig,
  type LinkState,
  type SaslState,
  type SessionState,
  type AuthorizationState,
  type PendingState,
  type TransactionState,
  type UpdateState,
  type ClosedState,
  type Credentials,
  type LoginMechanism,
  type LoginResult,
  type SessionInput,
  type Effect,
  type StepResult,
} from './session.js';
export { RetrFramer, retrFramer, RETR_FRAME_INPUT, RETR_FRAME_WASM, type FramedReply } from './retr-frame.js';
