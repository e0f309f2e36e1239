/** What one live-update handler decided. */
export type HandlerOutcome =
  /** Nothing to do: the VMI already matches, or the handler does not apply. */
  | { kind: 'none' }
  /** The VMI was patched in place; `paths` are the template paths now live. */
  | { kind: 'patched'; paths: string[]; note: string }
  /** The change needs a restart: KubeVirt sets RestartRequired with `message`; `why`, when set, is vmroll's fuller reason. */
  | { kind: 'restart'; path: string; message: string; why?: string }
  /** A retryable error: no condition change, the change is applied on a later pass. */
  | { kind: 'wait'; path: string; message: string };
