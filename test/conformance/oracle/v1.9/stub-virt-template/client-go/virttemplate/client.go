// Package virttemplate stands in for kubevirt.io/virt-template-client-go/virttemplate (not
// served by the module proxy here). NewForConfig always fails: the oracle never starts
// KubeVirt's informer factory, which is the only caller.
package virttemplate

import (
	"errors"

	"k8s.io/client-go/rest"
)

// Interface is the part of the generated clientset KubeVirt's informer factory calls.
type Interface interface {
	TemplateV1beta1() TemplateV1beta1Interface
}

// TemplateV1beta1Interface exposes the REST client for list/watch.
type TemplateV1beta1Interface interface {
	RESTClient() rest.Interface
}

// NewForConfig reports that this stand-in has no client.
func NewForConfig(*rest.Config) (Interface, error) {
	return nil, errors.New("virt-template client: not available in the vmroll oracle (stand-in module)")
}
