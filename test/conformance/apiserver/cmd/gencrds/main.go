// Command gencrds writes KubeVirt's CustomResourceDefinitions as one JSON array, their
// structural schemas generated from the Go types of the kubevirt.io/api module pinned in
// go.mod: controller-tools' CRD schema generator reads the types and their markers
// (+listType, +listMapKey, +kubebuilder:validation:*, +optional) from the module's source,
// as KubeVirt's own generator does. Names, scopes and subresources follow KubeVirt's
// virt-operator. Run it from this module's directory (it runs `go list`).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"golang.org/x/tools/go/packages"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-tools/pkg/crd"
	crdmarkers "sigs.k8s.io/controller-tools/pkg/crd/markers"
	"sigs.k8s.io/controller-tools/pkg/loader"
	"sigs.k8s.io/controller-tools/pkg/markers"

	// The packages whose source the generator reads; imported so go.mod pins them.
	_ "kubevirt.io/api/core/v1"
	_ "kubevirt.io/api/instancetype/v1beta1"
)

// kind is one CRD to generate and how KubeVirt's virt-operator registers it.
type kind struct {
	pkg, group, version, kind, plural string
	shortNames                        []string
	cluster                           bool
	status                            bool // status subresource
}

const (
	corePkg         = "kubevirt.io/api/core/v1"
	instancetypePkg = "kubevirt.io/api/instancetype/v1beta1"
)

var kinds = []kind{
	{corePkg, "kubevirt.io", "v1", "VirtualMachine", "virtualmachines", []string{"vm", "vms"}, false, true},
	// KubeVirt registers the VMI without a status subresource: virt-handler writes whole objects.
	{corePkg, "kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances", []string{"vmi", "vmis"}, false, false},
	{corePkg, "kubevirt.io", "v1", "VirtualMachineInstanceMigration", "virtualmachineinstancemigrations", []string{"vmim", "vmims"}, false, true},
	{corePkg, "kubevirt.io", "v1", "KubeVirt", "kubevirts", []string{"kv", "kvs"}, false, true},
	{instancetypePkg, "instancetype.kubevirt.io", "v1beta1", "VirtualMachineInstancetype", "virtualmachineinstancetypes", []string{"vminstancetype", "vminstancetypes", "vmf", "vmfs"}, false, false},
	{instancetypePkg, "instancetype.kubevirt.io", "v1beta1", "VirtualMachineClusterInstancetype", "virtualmachineclusterinstancetypes", []string{"vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs"}, true, false},
	{instancetypePkg, "instancetype.kubevirt.io", "v1beta1", "VirtualMachinePreference", "virtualmachinepreferences", []string{"vmpref", "vmprefs", "vmp", "vmps"}, false, false},
	{instancetypePkg, "instancetype.kubevirt.io", "v1beta1", "VirtualMachineClusterPreference", "virtualmachineclusterpreferences", []string{"vmcp", "vmcps"}, true, false},
}

func main() {
	out := flag.String("out", "", "file to write the JSON array to (default stdout)")
	flag.Parse()
	crds, err := generate()
	if err != nil {
		fmt.Fprintf(os.Stderr, "gencrds: %v\n", err)
		os.Exit(1)
	}
	data, err := json.MarshalIndent(crds, "", " ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "gencrds: %v\n", err)
		os.Exit(1)
	}
	if *out == "" {
		_, _ = os.Stdout.Write(append(data, '\n'))
		return
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "gencrds: %v\n", err)
		os.Exit(1)
	}
}

func generate() ([]apiextensionsv1.CustomResourceDefinition, error) {
	roots, err := loader.LoadRoots(corePkg, instancetypePkg)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", corePkg, instancetypePkg, err)
	}
	registry := &markers.Registry{}
	if err := crdmarkers.Register(registry); err != nil {
		return nil, err
	}
	parser := &crd.Parser{
		Collector: &markers.Collector{Registry: registry},
		Checker:   &loader.TypeChecker{},
		// KubeVirt has a few float fields (e.g. migration bandwidth ratios); its own CRDs allow them.
		AllowDangerousTypes: true,
	}
	crd.AddKnownTypes(parser)
	for _, root := range roots {
		parser.NeedPackage(root)
	}
	noDescriptions := 0 // descriptions only make the CRDs (and etcd's writes) bigger
	var result []apiextensionsv1.CustomResourceDefinition
	for _, k := range kinds {
		gk := schema.GroupKind{Group: k.group, Kind: k.kind}
		parser.NeedCRDFor(gk, &noDescriptions)
		def, ok := parser.CustomResourceDefinitions[gk]
		if !ok {
			return nil, fmt.Errorf("no CRD generated for %s (is %s.%s in %s?)", gk, k.kind, k.version, k.pkg)
		}
		def = *def.DeepCopy()
		// The object's metadata is ObjectMeta, which the API server validates itself.
		crd.FixTopLevelMetadata(def)
		def.Name = k.plural + "." + k.group
		def.Spec.Names.Plural = k.plural
		def.Spec.Names.ShortNames = k.shortNames
		def.Spec.Names.Categories = []string{"all"}
		def.Spec.Scope = apiextensionsv1.NamespaceScoped
		if k.cluster {
			def.Spec.Scope = apiextensionsv1.ClusterScoped
		}
		// Only the version vmroll reads is served (KubeVirt also serves v1alpha3 as an alias).
		var versions []apiextensionsv1.CustomResourceDefinitionVersion
		for _, v := range def.Spec.Versions {
			if v.Name != k.version {
				continue
			}
			v.Served, v.Storage = true, true
			if k.status {
				v.Subresources = &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}}
			}
			versions = append(versions, v)
		}
		if len(versions) != 1 {
			return nil, fmt.Errorf("%s: version %s not generated", gk, k.version)
		}
		def.Spec.Versions = versions
		result = append(result, def)
	}
	// Type errors are reported by the loader of the module build itself; anything else is fatal.
	if loader.PrintErrors(roots, packages.TypeError) {
		return nil, fmt.Errorf("controller-tools reported errors (above) while reading %s and %s", corePkg, instancetypePkg)
	}
	return result, nil
}
