#include "textflag.h"

#define SYS_clone 220
#define SYS_exit_group 94

// func cloneShared(flags, stack uintptr, args *[7]uintptr) (pid uintptr, errno syscall.Errno)
//
// The frame holds childMain's seven argument words at 8(RSP)..56(RSP),
// where ABI0 on arm64 has a callee find them (0(RSP) is the slot of the
// callee's saved link register). A vfork child runs on this very stack
// pointer and finds them there.
TEXT ·cloneShared(SB),NOSPLIT,$56-40
	MOVD	args+16(FP), R9
	MOVD	0(R9), R10
	MOVD	R10, 8(RSP)
	MOVD	8(R9), R10
	MOVD	R10, 16(RSP)
	MOVD	16(R9), R10
	MOVD	R10, 24(RSP)
	MOVD	24(R9), R10
	MOVD	R10, 32(RSP)
	MOVD	32(R9), R10
	MOVD	R10, 40(RSP)
	MOVD	40(R9), R10
	MOVD	R10, 48(RSP)
	MOVD	48(R9), R10
	MOVD	R10, 56(RSP)

	MOVD	stack+8(FP), R1
	CBZ	R1, doclone
	// A stack of its own: the child's stack pointer must stay 16-byte
	// aligned (the kernel enables SP alignment checks), and ABI0 wants the
	// arguments 8 bytes above it; so the child starts 64 bytes below
	// stack, with its own copy of the arguments, written here while the
	// memory is still only ours.
	AND	$~15, R1
	SUB	$64, R1
	MOVD	8(RSP), R10
	MOVD	R10, 8(R1)
	MOVD	16(RSP), R10
	MOVD	R10, 16(R1)
	MOVD	24(RSP), R10
	MOVD	R10, 24(R1)
	MOVD	32(RSP), R10
	MOVD	R10, 32(R1)
	MOVD	40(RSP), R10
	MOVD	R10, 40(R1)
	MOVD	48(RSP), R10
	MOVD	R10, 48(R1)
	MOVD	56(RSP), R10
	MOVD	R10, 56(R1)

doclone:
	// clone(flags, newsp, parent_tid, tls, child_tid) on arm64.
	MOVD	flags+0(FP), R0
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$SYS_clone, R8
	SVC
	CBZ	R0, child
	CMN	$4095, R0
	BCC	ok
	NEG	R0, R0
	MOVD	ZR, pid+24(FP)
	MOVD	R0, errno+32(FP)
	RET
ok:
	MOVD	R0, pid+24(FP)
	MOVD	ZR, errno+32(FP)
	RET

child:
	// The child: the arguments are 8 bytes above its stack pointer (ours,
	// or the copy on its own stack). childMain exits; it never returns.
	BL	·childMain(SB)
	MOVD	$1, R0
	MOVD	$SYS_exit_group, R8
	SVC
	UNDEF
