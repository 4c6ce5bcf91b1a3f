//go:build !amd64 && !arm64

package workload

import "syscall"

// cloneShared needs assembly (clone_amd64.s, clone_arm64.s): on other
// architectures vfork and clone-vm children are refused.
func cloneShared(flags, stack uintptr, args *[childArgs]uintptr) (pid uintptr, errno syscall.Errno) {
	return 0, syscall.ENOSYS
}
