/**
 * What vmroll records on a VM in the cluster about its restarts, and the questions a new leader
 * asks of it: was this request or this generation already served, was the claimed restart issued,
 * did the VM come back. A restart is claimed (served keys, status InProgress, the VMI it replaces)
 * in one write before `restart` is called, so a leader that dies in between leaves a claim the next
 * one completes instead of repeating.
 */
import { RestartAnnotation, type StringMap } from './annotations.ts';

/** The state of a VM's last restart by vmroll. */
export const RestartStatus = {
  /** Claimed and issued (or about to be): waiting for the VM to come back Ready. */
  InProgress: 'InProgress',
  /** The VM came back Running and Ready. */
  Succeeded: 'Succeeded',
  /** The VM did not come back within the health timeout: its group is stopped. */
  Failed: 'Failed',
} as const;
/** One of {@link RestartStatus}. */
export type RestartStatus = (typeof RestartStatus)[keyof typeof RestartStatus];

/** A VM's restart record, read from its live annotations; a field is null when absent or unreadable. */
export interface RestartRecord {
  /** The generation the last restart was for. */
  generation: number | null;
  /** The request token the last restart served. */
  request: string | null;
  status: RestartStatus | null;
  /** Epoch ms. */
  startedAt: number | null;
  finishedAt: number | null;
  vmiUid: string | null;
  message: string | null;
}

/** The record of a VM vmroll never restarted. */
export const NO_RECORD: RestartRecord = { generation: null, request: null, status: null, startedAt: null, finishedAt: null, vmiUid: null, message: null };

function instant(text: string | undefined): number | null {
  if (text === undefined || !/^\d{4}-\d\d-\d\dT/.test(text)) return null;
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : t;
}

/** Reads the restart record from a live VM's annotations; values someone mangled read as absent. */
export function readRestartRecord(annotations: StringMap | undefined): RestartRecord {
  const a = annotations ?? {};
  const gen = a[RestartAnnotation.restartedGeneration];
  const status = a[RestartAnnotation.status];
  return {
    generation: gen !== undefined && /^\d+$/.test(gen) ? Number(gen) : null,
    request: a[RestartAnnotation.restartedRequest] ?? null,
    status: status !== undefined && Object.hasOwn(RestartStatus, status) ? (status as RestartStatus) : null,
    startedAt: instant(a[RestartAnnotation.startedAt]),
    finishedAt: instant(a[RestartAnnotation.finishedAt]),
    vmiUid: a[RestartAnnotation.vmiUid] ?? null,
    message: a[RestartAnnotation.message] ?? null,
  };
}

/** RFC 3339 in UTC to the second, as Kubernetes writes times. */
export function rfc3339(at: number): string {
  return new Date(Math.floor(at / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * The annotations that claim a restart, written in one update (with the VM's resourceVersion, so
 * two leaders cannot both claim) before calling `restart`. `null` removes an annotation (a
 * merge-patch null). The served keys are written now: from here on the restart is done or under way.
 */
export function claimAnnotations(claim: {
  /** The VM's metadata.generation being restarted for (its staged changes up to it are served). */
  generation: number;
  /** The request token served, when the restart serves one; else the previous one is kept. */
  request: string | null;
  /** The VMI running now, which the restart replaces; null when there is none. */
  vmiUid: string | null;
  now: number;
}): Record<string, string | null> {
  return {
    [RestartAnnotation.restartedGeneration]: String(claim.generation),
    ...(claim.request !== null && { [RestartAnnotation.restartedRequest]: claim.request }),
    [RestartAnnotation.status]: RestartStatus.InProgress,
    [RestartAnnotation.startedAt]: rfc3339(claim.now),
    [RestartAnnotation.finishedAt]: null,
    [RestartAnnotation.vmiUid]: claim.vmiUid ?? '',
    [RestartAnnotation.message]: null,
  };
}

/** The annotations that close a restart: Succeeded, or Failed with why. */
export function finishAnnotations(finish: { status: 'Succeeded' | 'Failed'; now: number; message?: string }): Record<string, string | null> {
  return {
    [RestartAnnotation.status]: finish.status,
    [RestartAnnotation.finishedAt]: rfc3339(finish.now),
    [RestartAnnotation.message]: finish.status === RestartStatus.Failed ? (finish.message ?? 'did not come back Ready') : null,
  };
}

/** Annotations after a merge patch of them (`null` removes a key): what the cluster holds after claim or finish. */
export function patchedAnnotations(annotations: StringMap | undefined, patch: Readonly<Record<string, string | null>>): Record<string, string> {
  const out: Record<string, string> = { ...annotations };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** Whether a restart for `generation` (or a later one) was already claimed: staged changes up to it need none. */
export function generationServed(record: RestartRecord, generation: number): boolean {
  return record.generation !== null && record.generation >= generation;
}

/** Whether the restart request `token` was already served. */
export function requestServed(record: RestartRecord, token: string): boolean {
  return record.request === token;
}

/** The request token in a VM's annotations, or null; an empty value asks for nothing. */
export function requestToken(annotations: StringMap | undefined): string | null {
  const t = annotations?.[RestartAnnotation.requested];
  return t === undefined || t.trim() === '' ? null : t;
}

/**
 * The restart request one change of the desired VM makes: its `vmroll.dev/restart-requested` token
 * when the change adds or changes it, else null (removing it asks for nothing). A VM the change
 * creates (`previous` undefined) asks for nothing: it starts with its spec anyway.
 */
export function requestChange(previous: StringMap | undefined, desired: StringMap | undefined, opts: { created: boolean }): string | null {
  if (opts.created) return null;
  const next = requestToken(desired);
  return next !== null && next !== requestToken(previous) ? next : null;
}

/**
 * The request still to be served for a VM, or null: what the sync writes to
 * `vmroll.dev/restart-pending` (in the same apply as the new token, so no crash between the two
 * loses it) and what the planner serves. A token is pending when this change introduced it or the
 * cluster's copy already marks it pending, and vmroll has not restarted for it yet.
 */
export function pendingRequest(input: {
  /**
   * The previous synced desired VM's annotations; on a process's first sync, the cluster's copy
   * before this sync's apply (a token it already holds is then not new).
   */
  previous: StringMap | undefined;
  desired: StringMap | undefined;
  /** The live VM's annotations; undefined when it does not exist yet. */
  live: StringMap | undefined;
}): string | null {
  const token = requestToken(input.desired);
  if (token === null || input.live === undefined) return null;
  if (requestServed(readRestartRecord(input.live), token)) return null;
  const introduced = requestChange(input.previous, input.desired, { created: false }) !== null;
  const marked = input.live[RestartAnnotation.pending] === token;
  return introduced || marked ? token : null;
}

/** The VMI of a VM as the restart checks see it. */
export interface VmiState {
  uid: string;
  /** metadata.deletionTimestamp is set: KubeVirt is stopping it. */
  terminating: boolean;
  /** status.phase, e.g. Running. */
  phase: string | null;
  /** The Ready condition is True. */
  ready: boolean;
  /** The AgentConnected condition is True. */
  agentConnected: boolean;
}

/**
 * Whether the claimed restart reached KubeVirt: the VMI it replaces is gone or going, or the VM
 * holds state change requests. False means the claim stands but `restart` must still be called
 * (a leader died between claiming and calling): calling it serves the same keys, once.
 */
export function restartIssued(record: RestartRecord, vmi: VmiState | null, pendingStateChangeRequests: boolean): boolean {
  if (record.status !== RestartStatus.InProgress) return true;
  if (pendingStateChangeRequests || vmi === null || vmi.terminating) return true;
  return record.vmiUid !== null && record.vmiUid !== '' ? vmi.uid !== record.vmiUid : false;
}

/** Where a restart in progress stands. */
export interface RestartHealth {
  state: 'waiting' | 'healthy' | 'failed';
  /** For the report: what it waits for, or why it failed. */
  message: string;
}

/** `90s`, `10m`, `1h`, `1h30m`: a timeout as configured. */
function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s % 60 !== 0 || s < 60) return `${s}s`;
  const m = s / 60;
  return m < 60 ? `${m}m` : `${Math.floor(m / 60)}h${m % 60 !== 0 ? `${m % 60}m` : ''}`;
}

/** The health gate of a restart in progress: a new VMI Running and Ready (and AgentConnected when expected) within the timeout. */
export function restartHealth(input: { record: RestartRecord; vmi: VmiState | null; expectAgent: boolean; now: number; timeoutMs: number }): RestartHealth {
  const { record, vmi } = input;
  const fresh = vmi !== null && !vmi.terminating && vmi.uid !== record.vmiUid;
  const missing: string[] = [];
  if (!fresh) missing.push('a new VMI');
  else {
    if (vmi.phase !== 'Running') missing.push(`Running (phase ${vmi.phase ?? 'unknown'})`);
    if (!vmi.ready) missing.push('Ready');
    if (input.expectAgent && !vmi.agentConnected) missing.push('AgentConnected');
  }
  if (missing.length === 0) return { state: 'healthy', message: 'Running and Ready again' };
  const started = record.startedAt ?? input.now;
  const waited = Math.max(0, input.now - started);
  if (waited >= input.timeoutMs) return { state: 'failed', message: `did not come back within ${seconds(input.timeoutMs)}: still no ${missing.join(', ')}` };
  return { state: 'waiting', message: `waiting for ${missing.join(', ')}` };
}
