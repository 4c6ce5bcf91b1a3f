#include "textflag.h"

#define SYS_clone 56
#define SYS_exit_group 231

// func cloneShared(flags, stack uintptr, args *[7]uintptr) (pid uintptr, errno syscall.Errno)
TEXT ·cloneShared(SB),NOSPLIT,$64-40
	// childMain's arguments, ABI0: in our outgoing area, which is where a
	// vfork child (same stack pointer) finds them.
	MOVQ	args+16(FP), SI
	MOVQ	0(SI), AX
	MOVQ	AX, 0(SP)
	MOVQ	8(SI), AX
	MOVQ	AX, 8(SP)
	MOVQ	16(SI), AX
	MOVQ	AX, 16(SP)
	MOVQ	24(SI), AX
	MOVQ	AX, 24(SP)
	MOVQ	32(SI), AX
	MOVQ	AX, 32(SP)
	MOVQ	40(SI), AX
	MOVQ	AX, 40(SP)
	MOVQ	48(SI), AX
	MOVQ	AX, 48(SP)

	MOVQ	flags+0(FP), DI
	MOVQ	stack+8(FP), SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$SYS_clone, AX
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	NEGQ	AX
	MOVQ	$0, pid+24(FP)
	MOVQ	AX, errno+32(FP)
	RET
ok:
	MOVQ	AX, pid+24(FP)
	MOVQ	$0, errno+32(FP)
	RET

child:
	// The child: the stack pointer is at childMain's arguments (ours, or
	// the copy on its own stack). childMain exits; it never returns.
	CALL	·childMain(SB)
	MOVQ	$1, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	INT	$3
