// Package v1beta1 stands in for kubevirt.io/virt-template-api/core/v1beta1 (not served by the
// module proxy here): an empty VirtualMachineTemplate, enough for an informer's object type.
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// VirtualMachineTemplate has only type and object metadata; the oracle never creates one.
type VirtualMachineTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// DeepCopyObject makes the type a runtime.Object.
func (t *VirtualMachineTemplate) DeepCopyObject() runtime.Object {
	out := *t
	t.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}
