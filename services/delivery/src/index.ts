export {
  startIntake,
  effectiveQuota,
  type Intake,
  type IntakeDeps,
  type IntakeSettings,
  type ListenAddress,
  type Protocol,
} from './intake.js';
export { DeliverySlots, type Release } from './slots.js';
export { REPLIES, storeFailure, type Outcome, type Reply } from './replies.js';
