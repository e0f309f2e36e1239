/**
 * The labels and annotations of restart orchestration. Those people write in Git say what may be
 * restarted and ask for restarts; those vmroll writes on the VM in the cluster record what it did,
 * so that a new leader knows it (exactly once across leader changes, without memory).
 */

/** Names of the restart labels and annotations, all under `vmroll.dev/`. */
export const RestartAnnotation = {
  /** In Git, per VM: `manual`, `onChange` or `window`, overriding the repository's policy. */
  policy: 'vmroll.dev/restart-policy',
  /** In Git, label or annotation: `never` protects the VM from every restart by vmroll, whatever the policy. */
  protect: 'vmroll.dev/restart',
  /** In Git, per VM: a failed restart stops the VMs of its group only (default: the VM's namespace). */
  group: 'vmroll.dev/restart-group',
  /** In Git, per VM: any token; each new value asks for exactly one restart. */
  requested: 'vmroll.dev/restart-requested',
  /**
   * Written by the sync's apply next to `restart-requested`: the token still to be served, kept
   * until vmroll has restarted for it. It makes a request survive a leader that applied the new
   * token and died before restarting; a token merely present (a new VM, a VM first seen) asks for nothing.
   */
  pending: 'vmroll.dev/restart-pending',
  /** Written by vmroll: the VM's metadata.generation its last restart was for (staged changes up to it are served). */
  restartedGeneration: 'vmroll.dev/restarted-generation',
  /** Written by vmroll: the `restart-requested` token its last restart served. */
  restartedRequest: 'vmroll.dev/restarted-request',
  /** Written by vmroll: `InProgress`, `Succeeded` or `Failed`, the state of its last restart. */
  status: 'vmroll.dev/restart-status',
  /** Written by vmroll: when it claimed the last restart (RFC 3339, UTC), just before issuing it. */
  startedAt: 'vmroll.dev/restart-started-at',
  /** Written by vmroll: when the last restart came back healthy or was declared failed. */
  finishedAt: 'vmroll.dev/restart-finished-at',
  /** Written by vmroll: the uid of the VMI the last restart replaces: another uid (or none) means the restart was issued. */
  vmiUid: 'vmroll.dev/restart-vmi-uid',
  /** Written by vmroll: why the last restart failed. */
  message: 'vmroll.dev/restart-message',
  /** Written by vmroll in the claim: `"true"` when the VMI it replaces had AgentConnected, so the new one must reconnect its guest agent. */
  agent: 'vmroll.dev/restart-agent',
} as const;
/** One of {@link RestartAnnotation}. */
export type RestartAnnotation = (typeof RestartAnnotation)[keyof typeof RestartAnnotation];

/** The one value of `vmroll.dev/restart` vmroll understands. */
export const PROTECTED_VALUE = 'never';

/** Labels or annotations of a Kubernetes object, as read from its metadata. */
export type StringMap = Readonly<Record<string, string>>;
