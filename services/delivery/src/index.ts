export { startLmtp, type Intake, type IntakeDeps, type IntakeSettings } from './lmtp.js';
