//go:build amd64 || arm64

package workload

import "syscall"

// cloneShared creates a child that shares the parent's address space
// (flags include CLONE_VM) and runs childMain(args...) there; it returns the
// child's pid in the parent. With stack 0 (vfork) the child runs on the
// parent's stack, below cloneShared's frame, while the parent is suspended;
// otherwise stack points at a copy of args at the top of the child's own
// stack (amd64 starts the child's stack pointer there; arm64, whose ABI0
// wants the arguments 8 bytes above a 16-byte aligned stack pointer, puts
// a copy of its own just below it). It is assembly because the child must never return through Go
// frames that the parent will use again: the child calls childMain from
// inside cloneShared and exits there.
//
//go:noescape
func cloneShared(flags, stack uintptr, args *[childArgs]uintptr) (pid uintptr, errno syscall.Errno)
