//go:build !amd64

package workload

import "syscall"

// cloneShared needs assembly (see clone_amd64.s), written for amd64 only:
// vfork and clone-vm children are refused elsewhere.
func cloneShared(flags, stack uintptr, args *[childArgs]uintptr) (pid uintptr, errno syscall.Errno) {
	return 0, syscall.ENOSYS
}
