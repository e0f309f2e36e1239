package main

import (
	_ "kubevirt.io/kubevirt/pkg/virt-controller/watch/vm"
	_ "kubevirt.io/kubevirt/pkg/testutils"
)

func main() {}
