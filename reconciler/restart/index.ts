/** Restart orchestration's pure core: policies, maintenance windows, restart records and the planner (README.md). */
export { PROTECTED_VALUE, RestartAnnotation, type StringMap } from './annotations.ts';
export { CronError, type CronSchedule, dayMatches, parseCron } from './cron.ts';
export {
  DEFAULT_HEALTH_TIMEOUT_MS,
  MANUAL_POLICY,
  MAX_WINDOW_MS,
  type RestartBudget,
  type RestartConfigBlock,
  type RestartConfigProblem,
  RestartPolicy,
  type RestartPolicySpec,
  type VmRestartPolicy,
  restartConfigProblems,
  restartPolicyOf,
  vmRestartPolicy,
} from './policy.ts';
export {
  NO_RECORD,
  type RestartHealth,
  type RestartRecord,
  RestartStatus,
  type VmiState,
  claimAnnotations,
  finishAnnotations,
  generationServed,
  patchedAnnotations,
  pendingRequest,
  readRestartRecord,
  requestChange,
  requestServed,
  requestToken,
  restartHealth,
  restartIssued,
} from './record.ts';
export {
  NEVER_STARTED_RUN_STRATEGIES,
  type RecordedVm,
  type RestartCandidate,
  type RestartDecision,
  RestartDecisionKind,
  type RestartPlan,
  type RestartPlanInput,
  mergeGateReasons,
  planRestarts,
} from './planner.ts';
export { type MaintenanceWindow, type WindowOccurrence, currentWindow, formatOccurrence, nextOccurrence, nextWindow, occurrenceAt } from './window.ts';
export { canonicalTimeZone, zoneAbbreviation } from './zone.ts';
