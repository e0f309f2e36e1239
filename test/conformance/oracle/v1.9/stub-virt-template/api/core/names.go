// Package core stands in for kubevirt.io/virt-template-api/core v0.2.0, which the Go module
// proxy does not serve here. It holds only the names that kubevirt.io/kubevirt/pkg/controller
// uses to index VirtualMachineExports; the VM controller under test never reads templates.
package core

// GroupName is the virt-template API group (the value KubeVirt v1.9.0 compares against).
const GroupName = "template.kubevirt.io"

// SingularResourceName is the indexer key KubeVirt's informer factory uses.
const SingularResourceName = "virtualmachinetemplate"

// PluralResourceName is the resource name of the template kind.
const PluralResourceName = "virtualmachinetemplates"
