/**
 * Help texts of the commands, in a module of their own: `vmroll help <command>` and `vmroll --help`
 * print them without loading a command's dependencies (the Kubernetes client, Octokit, isomorphic-git).
 */

/** Help text of `vmroll run`. */
export const RUN_HELP = `Usage: vmroll run --repo <url|path> [--kubeconfig <file> | --cluster sim] [options]

Follows a Git repository of VirtualMachine manifests and applies them to the cluster:
fetch, plan every changed VM with the rollout engine, apply only what changed, and report
what went live and what waits for a restart. The first line names the target (the API
server, its context and kubeconfig, or the embedded simulator and its state file): on
stdout, or on stderr with --output json so stdout holds only the JSON document.

The cluster is chosen as kubectl chooses it: --kubeconfig, else KUBECONFIG, else the pod's
service account; --cluster kube alone uses ~/.kube/config. The embedded simulator runs only
when chosen (--cluster sim, or --sim-state / --sim-kubevirt). With nothing chosen, vmroll
refuses (exit 2) rather than guess.

Options:
  --config <file>            vmroll.yaml: several repositories, the namespaces each may write,
                             intervals, reporters, leader election (else VMROLL_CONFIG);
                             flags and environment variables override it. Reloaded when it
                             changes (a ConfigMap update too; its folder is watched and the
                             file read every 5s, VMROLL_CONFIG_POLL_INTERVAL): repositories
                             added start, removed ones stop (their VMs stay), changed ones are
                             rebuilt once their sync under way ends; the cluster, listen, the
                             webhook secret, leader election, cacheDir and logLevel need a
                             restart. A bad file is logged (file:line), the last good
                             configuration keeps running
  --repo <url|path>          Git repository over http(s), or a local repository path (SSH is
                             not supported yet); without it, and only with --cluster sim: the
                             bundled example (fixtures/example-repo as a Git repository in
                             .vmroll/example-repo, state in .vmroll/sim-state.json)
  --ref <ref>                branch, tag or commit to follow (default main; --branch is an
                             older name for it; else VMROLL_REF)
  --path <dir>               folder of the repository holding the manifests (default: all)
  --interval <duration>      time between syncs, with ±10% jitter (default 1m); a sync that
                             failed on a transient error (Git host or API server down) is
                             retried after 5s, doubling up to the interval
  --once                     sync once and exit
  --cluster sim|kube         sim: the embedded KubeVirt simulator; kube: the Kubernetes API
                             (else VMROLL_CLUSTER; see above when not given)
  --kubeconfig <file>        kubeconfig of the cluster (else KUBECONFIG, the pod's service
                             account, or with --cluster kube ~/.kube/config)
  --context <name>           kubeconfig context (default: its current context)
  --sim-state <file>         keep the simulated cluster in this file, shared between runs
  --sim-kubevirt <file>      the KubeVirt CR the simulator emulates (version, strategy, gates)
  --prune                    delete VMs this repository applied and no longer defines
                             (never one whose file failed to parse, one annotated
                             vmroll.dev/prune: disabled, nor any when the commit defines no
                             VM under --path); without it they are reported as orphans
  --strict                   a manifest file's warnings are errors of that file: documents of
                             other kinds (skipped otherwise, and listed as warnings) and fields
                             KubeVirt does not define (a typo such as socket: beside sockets);
                             the file's VMs are then held: neither applied nor pruned
  --listen <addr>            serve /healthz, /readyz, /metrics (Prometheus) and POST
                             /webhook/github (e.g. 127.0.0.1:8080)
  --leader-elect             several replicas, one reconciling: the holder of a Lease
                             (--cluster kube; else VMROLL_LEADER_ELECT=true)
  --leader-election-namespace <ns>
                             namespace of the Lease (default: the pod's, else vmroll)
  -o, --output text|json     text (default): a line per sync and per changed VM and field;
                             json: with --once, the VmPlan of the sync, also when the sync
                             fails (the failure in errors)
  --cache-dir <dir>          where http(s) repositories are cloned (default .vmroll/cache)
  --git-token-file <file>    Git token (else VMROLL_GIT_TOKEN or GIT_TOKEN)
  --webhook-secret-file <f>  GitHub webhook secret (else VMROLL_WEBHOOK_SECRET)
  --github-repo <owner/name> report to GitHub: commit status vmroll/sync on every synced
                             commit, vmroll/plan and one sticky plan comment on every open
                             pull request (reviewed every interval and on pull_request webhooks)
  --github-api-url <url>     GitHub API root (default https://api.github.com; Enterprise:
                             https://HOST/api/v3)
  --github-token-file <f>    GitHub token (else VMROLL_GITHUB_TOKEN or GITHUB_TOKEN)
  --gitea-url <url> --gitea-repo <owner/name> --gitea-token-file <f>
                             the same reports on Gitea (token else VMROLL_GITEA_TOKEN or
                             GITEA_TOKEN)
  --status-target-url <url>  link shown on commit statuses
  --log-level <level>        pino level on stderr (default info)
  --log-format json|text     logs on stderr as JSON lines (default) or as readable text
  -h, --help                 this text

Exit status with --once: 0 synced, 1 synced with manifest or apply errors, or the sync
failed; 2 bad usage. SIGTERM or SIGINT: the sync under way finishes, queued reports get up
to 10 s, the lease is released, exit 0.`;

/** Help text of `vmroll demo`. */
export const DEMO_HELP = `Usage: vmroll demo [--kubevirt-version vX.Y.Z]

A scripted tour, on a scratch copy of the example repository and the embedded KubeVirt
simulator (KubeVirt v1.9.0 unless told otherwise; its KubeVirt CR lists LiveMigrate in
workloadUpdateMethods, and db keeps its data on a ReadWriteOnce claim, so db is not
live-migratable):
  - a CPU hot-plug on web that reaches the guest through a live migration: the plan
    predicts it, the workload updater's migration (vmim) runs, and the VMI's
    status.currentCPUTopology changes once it has succeeded;
  - a CPU hot-plug on db that is blocked: patched into the VMI, no migration starts, and
    the guest keeps its sockets until a restart;
  - a change that is staged with RestartRequired, a revert that clears it, the change
    again, and a restart that applies it;
  - a second act on its own simulator, whose clock the demo moves by hand (a boot takes
    40 s of simulated time, no real wait): four VMs with a staged image change under
    restart policy window (Saturdays 02:00 UTC for 2h, budget: 1 at once, 3 per window).
    On Friday night nothing restarts and each VM says when it will ("1 of 3 this
    window"); inside the window vmroll restarts them one at a time, each after the
    previous came back Running and Ready, and the fourth waits for the next window.
Each step shows its commit, the sync and, for the hot-plugs, the plan's prediction and
what the simulator then did. Exits 0 only when every step did what it says.`;

/** Help text of `vmroll diff`. */
export const DIFF_HELP = `Usage: vmroll diff --baseline <vm.yaml or controllerrevision.yaml> --desired <vm.yaml> [options]

Predicts, offline, what KubeVirt does with a change to one VirtualMachine: which fields
go live into the running instance, which wait for a restart and why, and what happens to
the RestartRequired condition.

Options:
  --baseline <file>        the VM as it was when its running instance started: a
                           VirtualMachine, or the ControllerRevision KubeVirt stores at
                           each start (kubectl get controllerrevision
                           revision-start-vm-<uid>-<generation> -o yaml; the VM spec is
                           under data.spec)
  --desired <file>         the VM as it should be (e.g. the manifest in Git)
  --vmi <file>             the running VirtualMachineInstance. Without it no instance is
                           running: every change takes effect at the VM's next start,
                           nothing is applied live and no restart is needed
  --kubevirt <file>        the KubeVirt CR (strategy, feature gates, liveUpdateConfiguration,
                           status.observedKubeVirtVersion)
  --conditions <file>      YAML list of conditions already on the VM
  --instancetypes <file>   multi-document YAML of instancetypes and preferences
  --kubevirt-version <v>   KubeVirt version to model (e.g. v1.8.0); default: the CR's
                           status.observedKubeVirtVersion, else the seed model
  -o, --output text|json   text (default): one line per changed field; json: the VmPlan
  -h, --help               this text

Fields KubeVirt fills in itself: a stored VM (and so a baseline) carries fields that
KubeVirt writes when a manifest leaves them out, and applying the manifest keeps them.
When --desired leaves one out, diff takes the baseline's value instead of reporting a
change, and says so (a "filled from the baseline" line; clusterDefaults in the JSON):
  spec.template.spec.architecture, spec.template.spec.domain.machine.type (the webhook;
    machine.type only while architecture and preference are unchanged),
  spec.instancetype.kind, spec.preference.kind (the webhook's cluster kinds) and their
    revisionName (the controller), while the matcher names the same object,
  from KubeVirt v1.8 (the version modelled: --kubevirt or --kubevirt-version):
    spec.template.spec.domain.firmware.uuid and .serial, and the template annotation
    kubevirt.io/pci-topology-version.
A value that --desired does set, and that differs, is reported as a change.

Output: the text, or with --output json a VmPlan (schemas/vmplan.schema.json) whose
changes each carry rollout (live|staged) and takesEffect (running, vmObject,
nextRestart or nextStart).

Exit status: 0 a plan was computed; 1 KubeVirt's admission would refuse the desired VM;
2 bad input.`;

/** Help text of `vmroll plan`. */
export const PLAN_HELP = `Usage: vmroll plan --repo <url|path> [--ref <ref> | --pr <n>] [--kubeconfig <file> | --cluster sim] [options]

Plans one commit against a cluster without applying anything: for every VM, create,
update or delete, which changed fields go live into the running guest, which wait for a
restart and every reason why, and the RestartRequired message KubeVirt would set. With
--post, writes the plan to the pull request as the vmroll/plan commit status and vmroll's
sticky comment. The first line names the target (with --output text on stdout, else on
stderr); the markdown comment names it too.

The cluster is chosen as kubectl chooses it: --kubeconfig, else KUBECONFIG, else the pod's
service account; --cluster kube alone uses ~/.kube/config. The embedded simulator (read
only: its state file is loaded, never written) is used only when chosen: --cluster sim,
--sim-state or --sim-kubevirt. With nothing chosen, vmroll refuses (exit 2).

Options:
  --repo <url|path>          Git repository over http(s), or a local repository path (SSH is
                             not supported yet); give it as vmroll run is given it
                             (ownership annotations name it)
  --ref <ref>                branch, tag or commit to plan (default main)
  --pr <n>                   plan pull request n's head (refs/pull/<n>/head) instead of --ref
  --base <ref>               plan only the VMs whose files changed between the merge base of
                             <ref> and --ref and --ref itself (as git diff <ref>...<ref>);
                             with --pr and --post, the pull request's base is used when omitted
  --path <dir>               folder of the repository holding the manifests (default: all)
  --prune                    plan deletes for VMs this repository applied and no longer defines
                             (without it, they are listed as orphans)
  --strict                   a manifest file's warnings are errors of that file: documents of
                             other kinds (skipped otherwise, and listed as warnings) and fields
                             KubeVirt does not define (a typo such as socket: beside sockets);
                             the file's VMs are then held: neither applied nor pruned
  --identity <id>            the repository's ownership identity, when vmroll.yaml sets one
                             (default: the normalised URL plus --path; for a local checkout,
                             its origin remote's URL, so a CI checkout matches the deployment)
  --config <file>            vmroll.yaml: the restart policy of --repo (its entry, else the
                             top-level restart:) says per VM whether and when it restarts,
                             and its mergeGate fails the posted status (default: manual)
  --cluster sim|kube         sim: the embedded simulator; kube: the Kubernetes API (else
                             VMROLL_CLUSTER; see above when not given)
  --sim-state <file>         the simulated cluster's state file (as written by vmroll run)
  --sim-kubevirt <file>      the KubeVirt CR the simulator emulates
  --kubeconfig <file>        kubeconfig of the cluster (implies --cluster kube)
  --context <name>           kubeconfig context
  -o, --output text|markdown|json
                             text (default), the pull-request comment, or the VmPlan JSON
                             (also when the plan cannot be made: the failure in errors)
  --post                     with --pr: post the status and the comment to the Git host
  --github-repo <owner/name> GitHub repository to post to
  --github-api-url <url>     GitHub REST root (default https://api.github.com)
  --github-token-file <f>    GitHub token (else VMROLL_GITHUB_TOKEN or GITHUB_TOKEN)
  --gitea-url <url>          Gitea server to post to instead of GitHub
  --gitea-repo <owner/name>  Gitea repository
  --gitea-token-file <f>     Gitea token (else VMROLL_GITEA_TOKEN or GITEA_TOKEN)
  --target-url <url>         link on the commit status
  --cache-dir <dir>          where http(s) repositories are cloned (else VMROLL_CACHE_DIR,
                             default .vmroll/cache)
  --git-token-file <file>    Git token for cloning (else VMROLL_GIT_TOKEN or GIT_TOKEN)
  --log-level <level>        pino level on stderr (default warn)
  --log-format json|text     logs on stderr as JSON lines (default) or as readable text
  -h, --help                 this text

Exit status: 0 the plan has no errors; 1 manifest errors or admission refusals (or the
plan could not be made or posted); 2 bad usage.`;

/** Help text of `vmroll sim`. */
export const SIM_HELP = `Usage: vmroll sim [options]

Serves the embedded KubeVirt simulator over plain HTTP as a Kubernetes API server:
discovery, get/list/watch, create/update/patch/server-side apply/delete, the status
subresource and KubeVirt's start/stop/restart. kubectl and @kubernetes/client-node talk
to it; VirtualMachines written through it start VMIs, hot-plug and get RestartRequired
as the rollout engine decides. Runs until SIGINT or SIGTERM.

Options:
  --listen <addr>              where to serve (default 127.0.0.1:8080); port 0 picks a free one
  --state <file>               keep the cluster in this file: loaded at start, saved after writes
  --kubevirt <file>            the KubeVirt CR to emulate (version, rollout strategy, gates)
  --kubeconfig-out <file>      write a kubeconfig for the server (context vmroll-sim)
  --watch-history <n>          events kept for watches resuming from a resourceVersion (default 100000)
  --migration-duration <dur>   how long a simulated live migration takes (default 3s)
  --boot-time <dur>            how long a started VMI takes to become Running and Ready (default 0s)
  --latency <duration>         delay every API request, e.g. 50ms
  --error-rate <0..1>          answer this share of resource requests with 500 InternalError
  --error-status 500|503       the status --error-rate answers with (default 500)
  --conflict-rate <0..1>       answer this share of writes to existing objects with 409 Conflict
  --drop-watches-after <dur>   end every watch stream this long after it started, e.g. 2s
  --seed <n>                   seed of the fault generator (default 1)
  --log-level <level>          pino level on stderr (default info; debug logs every request)
  --log-format json|text       logs on stderr as JSON lines (default) or as readable text
  -h, --help                   this text

A VM annotated sim.vmroll.dev/fail-migrations=true has every live migration fail.

Faults can be changed while running: POST /admin/faults with a JSON body such as
{"errorRate":0.1,"latencyMs":50} (GET reads them); GET /admin/stats counts requests by
verb and resource, POST /admin/stats/reset zeroes them.

Exit status: 0 after a clean shutdown; 1 when the server cannot start; 2 bad usage.`;
