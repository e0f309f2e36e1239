// Command oracle runs KubeVirt's own VirtualMachine controller (kubevirt.io/kubevirt
// pkg/virt-controller/watch/vm, the release pinned in go.mod) over cases read as JSON from
// stdin, one sync of the VM key each, and prints one JSON result per case on stdout.
//
// The controller is wired the way KubeVirt's vm_test.go wires it (fake clientsets, informer
// stores and indexers, the wrapped work queue), but with the synchronisers virt-controller's
// application.go passes in production (network, firmware, instancetype), so that what reaches
// the VMI is what a real virt-controller would patch.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	k8sv1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"go.uber.org/mock/gomock"

	v1 "kubevirt.io/api/core/v1"
	instancetypev1beta1 "kubevirt.io/api/instancetype/v1beta1"
	cdifake "kubevirt.io/client-go/containerizeddataimporter/fake"
	"kubevirt.io/client-go/kubecli"
	"kubevirt.io/client-go/kubevirt/fake"
	"kubevirt.io/client-go/log"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	virtcontroller "kubevirt.io/kubevirt/pkg/controller"
	"kubevirt.io/kubevirt/pkg/defaults"
	instancetypecontroller "kubevirt.io/kubevirt/pkg/instancetype/controller/vm"
	netcontrollers "kubevirt.io/kubevirt/pkg/network/controllers"
	"kubevirt.io/kubevirt/pkg/testutils"
	"kubevirt.io/kubevirt/pkg/virt-controller/watch/vm"
)

// Case is one input: the cluster, the VM as stored, the spec its VMI started from, the VMI.
type Case struct {
	Name string `json:"name"`
	// KubeVirt is the KubeVirt CR (its spec.configuration is what the controller reads).
	KubeVirt *v1.KubeVirt `json:"kubevirt"`
	// VM is the VirtualMachine as stored (the desired one, after the API server's webhook defaults).
	VM *v1.VirtualMachine `json:"vm"`
	// Start is the VM the running VMI started from: its spec becomes the start ControllerRevision.
	Start *v1.VirtualMachine `json:"start"`
	// VMI is the running instance, or null.
	VMI *v1.VirtualMachineInstance `json:"vmi"`
	// Conditions already on the VM.
	Conditions []v1.VirtualMachineCondition `json:"conditions"`
	// Instancetypes holds VirtualMachine(Cluster)Instancetype and (Cluster)Preference objects.
	Instancetypes []json.RawMessage `json:"instancetypes"`
}

// Result is what one sync did.
type Result struct {
	Name string `json:"name"`
	// RestartRequired is the status of that condition on the VM after the sync.
	RestartRequired bool   `json:"restartRequired"`
	Message         string `json:"message,omitempty"`
	// Conditions are all the VM's conditions after the sync.
	Conditions []v1.VirtualMachineCondition `json:"conditions"`
	// VMIBefore and VMIAfter are the VMI as given (with the harness's ownership fields) and as stored after the sync.
	VMIBefore *v1.VirtualMachineInstance `json:"vmiBefore,omitempty"`
	VMIAfter  *v1.VirtualMachineInstance `json:"vmiAfter,omitempty"`
	// VMIDeleted says the controller deleted the VMI (a stop).
	VMIDeleted bool `json:"vmiDeleted"`
	// VMSpecAfter is the VM's spec as stored after the sync (the controller may write to it, e.g. the firmware UUID).
	VMSpecAfter *v1.VirtualMachineSpec `json:"vmSpecAfter,omitempty"`
	// SyncError is the error execute() returned: the key would be re-queued (a retryable error).
	SyncError string `json:"syncError,omitempty"`
	// Requeued says the key went back to the rate-limited queue.
	Requeued bool `json:"requeued"`
	// Actions lists the client calls the controller made (verb resource[/subresource]).
	Actions []string `json:"actions"`
	// Error is a harness failure or a panic: nothing above can be trusted.
	Error string `json:"error,omitempty"`
	// PanicIn names the innermost kubevirt.io/kubevirt function on the stack of a panic: the
	// controller itself panicked, which is KubeVirt's behaviour, not a harness failure.
	PanicIn string `json:"panicIn,omitempty"`
}

const (
	namespace = "default"
	vmUID     = types.UID("oracle-vm-uid")
)

// reporter turns gomock's failures (an unexpected client call) into a panic the case recovers from.
type reporter struct{}

func (reporter) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (reporter) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (reporter) Helper()                           {}

func main() {
	log.Log.SetVerbosityLevel(0)
	log.InitializeLogging("vmroll-oracle")
	// KubeVirt's logger writes to stderr; keep it quiet unless asked.
	if os.Getenv("ORACLE_LOG") == "" {
		log.Log.SetIOWriter(io.Discard)
	}
	var cases []Case
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	if err := dec.Decode(&cases); err != nil {
		fmt.Fprintf(os.Stderr, "oracle: reading cases from stdin: %v\n", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for i := range cases {
		if err := out.Encode(run(&cases[i])); err != nil {
			fmt.Fprintf(os.Stderr, "oracle: writing result: %v\n", err)
			os.Exit(2)
		}
	}
}

func run(c *Case) (res Result) {
	res.Name = c.Name
	res.Actions = []string{}
	defer func() {
		if r := recover(); r != nil {
			res.Error = fmt.Sprint(r)
			res.PanicIn = panicFrame(string(debug.Stack()))
			if os.Getenv("ORACLE_STACK") != "" {
				res.Error += "\n" + string(debug.Stack())
			}
		}
	}()
	if c.VM == nil || c.KubeVirt == nil {
		res.Error = "case needs vm and kubevirt"
		return res
	}

	kv := c.KubeVirt.DeepCopy()
	kv.Name, kv.Namespace = "kubevirt", "kubevirt"
	if kv.Status.DefaultArchitecture == "" {
		kv.Status.DefaultArchitecture = "amd64"
	}
	config, _, _ := testutils.NewFakeClusterConfigUsingKVWithCPUArch(kv, "amd64")

	virtClient := kubecli.NewMockKubevirtClient(gomock.NewController(reporter{}))
	virtFake := fake.NewSimpleClientset()
	k8sClient := k8sfake.NewSimpleClientset()
	cdiClient := cdifake.NewSimpleClientset()

	dataVolumeInformer, _ := testutils.NewFakeInformerFor(&cdiv1.DataVolume{})
	dataSourceInformer, _ := testutils.NewFakeInformerFor(&cdiv1.DataSource{})
	kvInformer, _ := testutils.NewFakeInformerFor(&v1.KubeVirt{})
	vmiInformer, _ := testutils.NewFakeInformerWithIndexersFor(&v1.VirtualMachineInstance{}, virtcontroller.GetVMIInformerIndexers())
	vmInformer, _ := testutils.NewFakeInformerWithIndexersFor(&v1.VirtualMachine{}, virtcontroller.GetVirtualMachineInformerIndexers())
	pvcInformer, _ := testutils.NewFakeInformerFor(&k8sv1.PersistentVolumeClaim{})
	namespaceInformer, _ := testutils.NewFakeInformerFor(&k8sv1.Namespace{})
	// The "vm" index as virt-controller's informer factory defines it: revisions by owning VM UID.
	crInformer, _ := testutils.NewFakeInformerWithIndexersFor(&appsv1.ControllerRevision{}, cache.Indexers{
		"vm": func(obj any) ([]string, error) {
			cr := obj.(*appsv1.ControllerRevision)
			for _, ref := range cr.OwnerReferences {
				if ref.Kind == "VirtualMachine" {
					return []string{string(ref.UID)}, nil
				}
			}
			return nil, nil
		},
	})
	itInformer, _ := testutils.NewFakeInformerFor(&instancetypev1beta1.VirtualMachineInstancetype{})
	citInformer, _ := testutils.NewFakeInformerFor(&instancetypev1beta1.VirtualMachineClusterInstancetype{})
	prefInformer, _ := testutils.NewFakeInformerFor(&instancetypev1beta1.VirtualMachinePreference{})
	cprefInformer, _ := testutils.NewFakeInformerFor(&instancetypev1beta1.VirtualMachineClusterPreference{})

	must(namespaceInformer.GetStore().Add(&k8sv1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}))

	recorder := record.NewFakeRecorder(1000)

	virtClient.EXPECT().VirtualMachineInstance(gomock.Any()).DoAndReturn(func(ns string) kubecli.VirtualMachineInstanceInterface {
		return virtFake.KubevirtV1().VirtualMachineInstances(ns)
	}).AnyTimes()
	virtClient.EXPECT().VirtualMachine(gomock.Any()).DoAndReturn(func(ns string) kubecli.VirtualMachineInterface {
		return virtFake.KubevirtV1().VirtualMachines(ns)
	}).AnyTimes()
	virtClient.EXPECT().GeneratedKubeVirtClient().Return(virtFake).AnyTimes()
	virtClient.EXPECT().CdiClient().Return(cdiClient).AnyTimes()
	virtClient.EXPECT().AppsV1().Return(k8sClient.AppsV1()).AnyTimes()
	virtClient.EXPECT().CoreV1().Return(k8sClient.CoreV1()).AnyTimes()
	virtClient.EXPECT().AuthorizationV1().Return(k8sClient.AuthorizationV1()).AnyTimes()
	virtClient.EXPECT().VirtualMachineInstancetype(gomock.Any()).DoAndReturn(func(ns string) any {
		return virtFake.InstancetypeV1beta1().VirtualMachineInstancetypes(ns)
	}).AnyTimes()
	virtClient.EXPECT().VirtualMachineClusterInstancetype().Return(virtFake.InstancetypeV1beta1().VirtualMachineClusterInstancetypes()).AnyTimes()
	virtClient.EXPECT().VirtualMachinePreference(gomock.Any()).DoAndReturn(func(ns string) any {
		return virtFake.InstancetypeV1beta1().VirtualMachinePreferences(ns)
	}).AnyTimes()
	virtClient.EXPECT().VirtualMachineClusterPreference().Return(virtFake.InstancetypeV1beta1().VirtualMachineClusterPreferences()).AnyTimes()

	record := func(prefix string) testing.ReactionFunc {
		return func(action testing.Action) (bool, runtime.Object, error) {
			name := prefix + action.GetVerb() + " " + action.GetResource().Resource
			if s := action.GetSubresource(); s != "" {
				name += "/" + s
			}
			res.Actions = append(res.Actions, name)
			return false, nil, nil
		}
	}
	virtFake.PrependReactor("*", "*", record(""))
	k8sClient.PrependReactor("*", "*", record("k8s "))
	cdiClient.PrependReactor("*", "*", record("cdi "))

	// Instance types and preferences: in their informer stores and in the fake clientset.
	for _, raw := range c.Instancetypes {
		obj, err := decodeInstancetype(raw)
		if err != nil {
			panic(err)
		}
		switch o := obj.(type) {
		case *instancetypev1beta1.VirtualMachineInstancetype:
			must(itInformer.GetStore().Add(o))
		case *instancetypev1beta1.VirtualMachineClusterInstancetype:
			must(citInformer.GetStore().Add(o))
		case *instancetypev1beta1.VirtualMachinePreference:
			must(prefInformer.GetStore().Add(o))
		case *instancetypev1beta1.VirtualMachineClusterPreference:
			must(cprefInformer.GetStore().Add(o))
		}
		must(virtFake.Tracker().Add(obj))
	}

	itController := instancetypecontroller.New(
		itInformer.GetStore(), citInformer.GetStore(), prefInformer.GetStore(), cprefInformer.GetStore(),
		crInformer.GetStore(), virtClient, config, recorder,
	)
	controller, err := vm.NewController(vmiInformer, vmInformer, dataVolumeInformer, dataSourceInformer, kvInformer,
		namespaceInformer, pvcInformer, crInformer, recorder, virtClient, config,
		netcontrollers.NewVMController(virtFake), vm.NewFirmwareController(virtFake), itController,
		[]string{}, []string{})
	if err != nil {
		panic(err)
	}
	mockQueue := testutils.NewMockWorkQueue(controller.Queue)
	controller.Queue = mockQueue

	// The stored VM: the webhook's defaults, then the fields virt-controller itself keeps.
	theVM := c.VM.DeepCopy()
	defaults.SetVirtualMachineDefaults(theVM, config, virtClient)
	theVM.Namespace = namespace
	theVM.UID = vmUID
	virtcontroller.SetLatestApiVersionAnnotation(theVM)
	theVM.Finalizers = append(theVM.Finalizers, v1.VirtualMachineControllerFinalizer)
	theVM.Status.Conditions = append([]v1.VirtualMachineCondition{}, c.Conditions...)
	startGeneration := int64(1)
	theVM.Generation = startGeneration
	if c.Start != nil {
		start := c.Start.DeepCopy()
		defaults.SetVirtualMachineDefaults(start, config, virtClient)
		if !jsonEqual(start.Spec, theVM.Spec) {
			theVM.Generation = startGeneration + 1
		}
	}

	var vmi *v1.VirtualMachineInstance
	if c.VMI != nil {
		vmi = c.VMI.DeepCopy()
		vmi.Name, vmi.Namespace = theVM.Name, namespace
		vmi.UID = "oracle-vmi-uid"
		t := true
		vmi.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: v1.VirtualMachineGroupVersionKind.GroupVersion().String(), Kind: v1.VirtualMachineGroupVersionKind.Kind,
			Name: theVM.Name, UID: vmUID, Controller: &t, BlockOwnerDeletion: &t,
		}}
		vmi.Finalizers = append(vmi.Finalizers, v1.VirtualMachineControllerFinalizer)
		if vmi.Annotations == nil {
			vmi.Annotations = map[string]string{}
		}
		vmi.Annotations[v1.VirtualMachineGenerationAnnotation] = fmt.Sprint(startGeneration)
		if vmi.Status.Phase == "" {
			vmi.Status.Phase = v1.Running
		}
		theVM.Status.Created = true
		theVM.Status.Ready = true
		theVM.Status.PrintableStatus = v1.VirtualMachineStatusRunning
		runStrategy, _ := theVM.RunStrategy()
		theVM.Status.RunStrategy = runStrategy

		if c.Start != nil {
			start := c.Start.DeepCopy()
			defaults.SetVirtualMachineDefaults(start, config, virtClient)
			start.ObjectMeta = theVM.ObjectMeta
			start.Generation = startGeneration
			cr, err := startRevision(start)
			if err != nil {
				panic(err)
			}
			vmi.Status.VirtualMachineRevisionName = cr.Name
			must(crInformer.GetStore().Add(cr))
			must(k8sClient.Tracker().Add(cr))
		}
		must(vmiInformer.GetStore().Add(vmi))
		must(virtFake.Tracker().Add(vmi))
		res.VMIBefore = vmi.DeepCopy()
	}
	// Every claim the VM names exists and is bound, as vmroll's engine assumes: KubeVirt looks
	// destination claims up in its PVC store (volume migration) and would otherwise refuse.
	for _, spec := range []*v1.VirtualMachine{theVM, c.Start} {
		if spec == nil || spec.Spec.Template == nil {
			continue
		}
		for _, vol := range spec.Spec.Template.Spec.Volumes {
			if vol.PersistentVolumeClaim == nil {
				continue
			}
			name := vol.PersistentVolumeClaim.ClaimName
			if _, exists, _ := pvcInformer.GetStore().GetByKey(namespace + "/" + name); exists {
				continue
			}
			must(pvcInformer.GetStore().Add(boundClaim(name)))
		}
	}
	must(vmInformer.GetStore().Add(theVM))
	must(virtFake.Tracker().Add(theVM))

	key, err := virtcontroller.KeyFunc(theVM)
	if err != nil {
		panic(err)
	}
	mockQueue.Add(key)
	before := mockQueue.GetRateLimitedEnqueueCount()
	controller.Execute()
	res.Requeued = mockQueue.GetRateLimitedEnqueueCount() > before

	ctx := context.Background()
	stored, err := virtFake.KubevirtV1().VirtualMachines(namespace).Get(ctx, theVM.Name, metav1.GetOptions{})
	if err != nil {
		panic(err)
	}
	res.Conditions = stored.Status.Conditions
	res.VMSpecAfter = &stored.Spec
	for _, cond := range stored.Status.Conditions {
		if cond.Type == v1.VirtualMachineRestartRequired && cond.Status == k8sv1.ConditionTrue {
			res.RestartRequired = true
			res.Message = cond.Message
		}
	}
	for _, cond := range stored.Status.Conditions {
		if cond.Type == v1.VirtualMachineFailure && cond.Status == k8sv1.ConditionTrue {
			res.SyncError = strings.TrimSpace(cond.Reason + ": " + cond.Message)
		}
	}
	if vmi != nil {
		after, err := virtFake.KubevirtV1().VirtualMachineInstances(namespace).Get(ctx, vmi.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// The controller deleted (stopped) it.
			res.VMIDeleted = true
		case err != nil:
			panic(err)
		default:
			res.VMIAfter = after
		}
	}
	return res
}

// boundClaim is a bound 10Gi filesystem claim.
func boundClaim(name string) *k8sv1.PersistentVolumeClaim {
	mode := k8sv1.PersistentVolumeFilesystem
	size := resource.MustParse("10Gi")
	return &k8sv1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: k8sv1.PersistentVolumeClaimSpec{
			AccessModes: []k8sv1.PersistentVolumeAccessMode{k8sv1.ReadWriteOnce},
			VolumeMode:  &mode,
			Resources:   k8sv1.VolumeResourceRequirements{Requests: k8sv1.ResourceList{k8sv1.ResourceStorage: size}},
			VolumeName:  "pv-" + name,
		},
		Status: k8sv1.PersistentVolumeClaimStatus{
			Phase:       k8sv1.ClaimBound,
			AccessModes: []k8sv1.PersistentVolumeAccessMode{k8sv1.ReadWriteOnce},
			Capacity:    k8sv1.ResourceList{k8sv1.ResourceStorage: size},
		},
	}
}

// startRevision builds `revision-start-vm-<uid>-<generation>` as virt-controller's createVMRevision does (spec only).
func startRevision(vm *v1.VirtualMachine) (*appsv1.ControllerRevision, error) {
	raw, err := json.Marshal(map[string]any{"spec": vm.Spec})
	if err != nil {
		return nil, err
	}
	t := true
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("revision-start-vm-%s-%d", vm.UID, vm.Generation),
			Namespace: vm.Namespace,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1.VirtualMachineGroupVersionKind.GroupVersion().String(), Kind: v1.VirtualMachineGroupVersionKind.Kind,
				Name: vm.Name, UID: vm.UID, Controller: &t, BlockOwnerDeletion: &t,
			}},
		},
		Data:     runtime.RawExtension{Raw: raw},
		Revision: vm.Generation,
	}, nil
}

func decodeInstancetype(raw json.RawMessage) (runtime.Object, error) {
	var meta metav1.TypeMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	var obj runtime.Object
	switch meta.Kind {
	case "VirtualMachineInstancetype":
		obj = &instancetypev1beta1.VirtualMachineInstancetype{}
	case "VirtualMachineClusterInstancetype":
		obj = &instancetypev1beta1.VirtualMachineClusterInstancetype{}
	case "VirtualMachinePreference":
		obj = &instancetypev1beta1.VirtualMachinePreference{}
	case "VirtualMachineClusterPreference":
		obj = &instancetypev1beta1.VirtualMachineClusterPreference{}
	default:
		return nil, fmt.Errorf("unknown instancetype kind %q", meta.Kind)
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// panicFrame returns the first kubevirt.io/kubevirt function in a panic's stack, or "".
func panicFrame(stack string) string {
	for _, line := range strings.Split(stack, "\n") {
		if strings.HasPrefix(line, "kubevirt.io/kubevirt/") {
			if i := strings.LastIndex(line, "("); i > 0 {
				return line[:i]
			}
			return line
		}
	}
	return ""
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
