// Command vmroll-apiserver runs Kubernetes' own kube-apiserver (k8s.io/kubernetes, built as
// a library) on an embedded etcd, both on 127.0.0.1 with free ports and a temp dir, serves
// KubeVirt's CRDs from a file the gencrds command wrote, writes an admin kubeconfig, prints
// one ready line on stdout and runs until SIGTERM or SIGINT. Test-only: vmroll's conformance
// tests start it through test/helpers/realApiServer.ts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	etcdserverpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// readyLine is what stdout carries once the server serves the CRDs; nothing else goes to stdout.
type readyLine struct {
	Ready      bool   `json:"ready"`
	Server     string `json:"server"`
	Kubeconfig string `json:"kubeconfig"`
	Dir        string `json:"dir"`
	CRDs       int    `json:"crds"`
	StartMs    int64  `json:"startMs"`
}

func main() {
	crdsFile := flag.String("crds", "", "JSON array of CustomResourceDefinitions to create and wait for (from gencrds)")
	dirFlag := flag.String("dir", "", "working directory (etcd data, certificates, kubeconfig); default a new temp dir, removed on exit")
	kubeconfigOut := flag.String("kubeconfig-out", "", "where to write the admin kubeconfig (default <dir>/kubeconfig)")
	startTimeout := flag.Duration("start-timeout", 3*time.Minute, "give up if etcd, the API server and the CRDs are not ready by then")
	verbosity := flag.Int("v", 0, "kube-apiserver log verbosity (klog -v), logs go to stderr")
	var extra stringList
	flag.Var(&extra, "apiserver-arg", "one more kube-apiserver flag, e.g. --apiserver-arg=--watch-cache-sizes=virtualmachines.kubevirt.io#0 (repeatable)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *crdsFile, *dirFlag, *kubeconfigOut, *startTimeout, *verbosity, extra); err != nil {
		fmt.Fprintf(os.Stderr, "vmroll-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, crdsFile, dir, kubeconfigOut string, startTimeout time.Duration, verbosity int, extraArgs []string) error {
	started := time.Now()
	var crds []apiextensionsv1.CustomResourceDefinition
	if crdsFile != "" {
		raw, err := os.ReadFile(crdsFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &crds); err != nil {
			return fmt.Errorf("%s: %w", crdsFile, err)
		}
	}
	ownDir := dir == ""
	if ownDir {
		d, err := os.MkdirTemp("", "vmroll-apiserver-")
		if err != nil {
			return err
		}
		dir = d
		defer os.RemoveAll(dir)
	}
	if kubeconfigOut == "" {
		kubeconfigOut = filepath.Join(dir, "kubeconfig")
	}

	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", fmt.Sprint(verbosity))

	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()

	etcd, etcdURL, err := startEtcd(startCtx, filepath.Join(dir, "etcd"))
	if err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	defer etcd.Close()

	pki, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}

	// The listener is made here so the port is free and ours before the server starts.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := listener.Addr().(*net.TCPAddr).Port
	server := fmt.Sprintf("https://127.0.0.1:%d", port)

	serverCtx, cancelServer := context.WithCancel(context.Background())
	defer cancelServer()
	done, err := startKubeAPIServer(serverCtx, listener, etcdURL, pki, extraArgs)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	// On every way out after this point, stop the server and wait for it before etcd closes.
	stopServer := func() {
		cancelServer()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "vmroll-apiserver: kube-apiserver did not stop within 30s")
		}
	}
	defer stopServer()

	if err := writeKubeconfig(kubeconfigOut, server, pki); err != nil {
		return err
	}
	admin := pki.adminRestConfig(server)
	// A server stopped before its post-start hooks finished exits the process from inside
	// kube-apiserver (klog.Fatal): so a failed start says why first, then exits at once.
	startFailed := func(err error) {
		fmt.Fprintf(os.Stderr, "vmroll-apiserver: %v\n", err)
		if ownDir {
			os.RemoveAll(dir)
		}
		os.Exit(1)
	}
	if err := waitReady(startCtx, admin, done); err != nil {
		startFailed(err)
	}
	if err := installCRDs(startCtx, admin, crds, done); err != nil {
		startFailed(err)
	}

	line, _ := json.Marshal(readyLine{Ready: true, Server: server, Kubeconfig: kubeconfigOut, Dir: dir, CRDs: len(crds), StartMs: time.Since(started).Milliseconds()})
	fmt.Println(string(line))

	// SIGUSR1 compacts etcd's history up to now, as etcd's periodic compaction would: a watch
	// that resumes from an older resourceVersion (and is not served from the watch cache) then
	// gets 410 Gone. Tests use it to drive clients' relist path.
	compact := make(chan os.Signal, 1)
	signal.Notify(compact, syscall.SIGUSR1)
	defer signal.Stop(compact)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			if err == nil {
				err = errors.New("stopped on its own")
			}
			return fmt.Errorf("kube-apiserver: %w", err)
		case err := <-etcd.Err():
			return fmt.Errorf("embedded etcd: %w", err)
		case <-compact:
			rev := etcd.Server.KV().Rev()
			if _, err := etcd.Server.Compact(ctx, &etcdserverpb.CompactionRequest{Revision: rev, Physical: true}); err != nil {
				fmt.Printf("{\"compacted\":0,\"error\":%q}\n", err.Error())
			} else {
				fmt.Printf("{\"compacted\":%d}\n", rev)
			}
		}
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// startEtcd starts a one-member etcd on 127.0.0.1 with kernel-chosen ports and returns its client URL.
func startEtcd(ctx context.Context, dataDir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "vmroll"
	cfg.Dir = dataDir
	cfg.LogLevel = zapcore.ErrorLevel.String()
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{local}
	cfg.AdvertiseClientUrls = []url.URL{local}
	cfg.ListenPeerUrls = []url.URL{local}
	cfg.AdvertisePeerUrls = []url.URL{local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A test cluster: no fsync per write (the data dir is thrown away), small snapshots.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-ctx.Done():
		e.Close()
		return nil, "", fmt.Errorf("not ready: %w", ctx.Err())
	}
	return e, "http://" + e.Clients[0].Addr().String(), nil
}

// startKubeAPIServer builds kube-apiserver's options as its command line would, then runs the
// same server chain (aggregator → kube APIs → apiextensions) the kube-apiserver binary runs.
func startKubeAPIServer(ctx context.Context, listener net.Listener, etcdURL string, pki *pki, extraArgs []string) (<-chan error, error) {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servingKey,
		"--client-ca-file=" + pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pki.saKey,
		"--service-account-signing-key-file=" + pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// No kubelets, no other API server: nothing to reconcile endpoints for.
		"--endpoint-reconciler-type=none",
		// Fairness queues only cost CPU on a shared test machine.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	args = append(args, extraArgs...)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	s.SecureServing.Listener = listener
	s.SecureServing.BindPort = listener.Addr().(*net.TCPAddr).Port
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	config, err := app.NewConfig(completed)
	if err != nil {
		return nil, err
	}
	cc, err := config.Complete()
	if err != nil {
		return nil, err
	}
	chain, err := app.CreateServerChain(cc)
	if err != nil {
		return nil, err
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- prepared.Run(ctx) }()
	return done, nil
}

// waitReady polls /readyz (every post-start hook, RBAC's bootstrap roles among them) and the default namespace.
func waitReady(ctx context.Context, cfg *rest.Config, done <-chan error) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	last := "no answer yet"
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "true").DoRaw(ctx)
		if err == nil {
			if _, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
				return nil
			}
			last = "default namespace not created yet"
		} else if ctx.Err() == nil {
			// /readyz?verbose lists the checks that have not passed yet.
			last = fmt.Sprintf("%v %s", err, tail(string(body), 600))
		}
		select {
		case err := <-done:
			return fmt.Errorf("kube-apiserver stopped before ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("not ready in time (%v): %s", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// installCRDs creates the CRDs and waits until each is Established (served) and NamesAccepted.
func installCRDs(ctx context.Context, cfg *rest.Config, crds []apiextensionsv1.CustomResourceDefinition, done <-chan error) error {
	if len(crds) == 0 {
		return nil
	}
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for i := range crds {
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crds[i], metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", crds[i].Name, err)
		}
	}
	for i := range crds {
		name := crds[i].Name
		for {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err == nil && established(got) {
				break
			}
			select {
			case err := <-done:
				return fmt.Errorf("kube-apiserver stopped while installing CRDs: %v", err)
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established in time: %v", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	// Established means the CRD handler serves the resource; discovery lags a little behind, and
	// clients that read discovery first (kubectl) would see 404s without this wait.
	disco, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for i := range crds {
		gv := crds[i].Spec.Group + "/" + crds[i].Spec.Versions[0].Name
		for {
			list, err := disco.Discovery().ServerResourcesForGroupVersion(gv)
			if err == nil && hasResource(list, crds[i].Spec.Names.Plural) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not in discovery in time: %v", crds[i].Name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	ok := 0
	for _, c := range crd.Status.Conditions {
		if (c.Type == apiextensionsv1.Established || c.Type == apiextensionsv1.NamesAccepted) && c.Status == apiextensionsv1.ConditionTrue {
			ok++
		}
	}
	return ok == 2
}

func hasResource(list *metav1.APIResourceList, plural string) bool {
	for _, r := range list.APIResources {
		if r.Name == plural {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
