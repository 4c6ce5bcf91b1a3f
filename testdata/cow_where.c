/* For cowtrace run --by: after a fork, the child copies a known number of
 * pages in each kind of mapping:
 *   cow_where FILE HEAP ANON FILEPAGES STACK
 * HEAP pages of the brk heap (sbrk), ANON of an anonymous mmap, FILEPAGES of
 * a private mapping of FILE (created here), STACK of an array on the main
 * stack. The parent writes every page before the fork, so that each is
 * shared; the child writes one byte into each and exits.
 *
 * The fork and the exit are raw system calls and the child calls no
 * function at all: libc's fork() would write its own data, thread block and
 * stack frames in the child (atfork handlers, lock resets), which would add
 * copies that this program cannot count. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define MAXSTACK 64

static long raw_fork(void)
{
	long ret;
#if defined(__x86_64__)
	__asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_fork) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = SYS_clone;
	register long x0 __asm__("x0") = 17; /* SIGCHLD */
	register long x1 __asm__("x1") = 0;
	register long x2 __asm__("x2") = 0;
	register long x3 __asm__("x3") = 0;
	register long x4 __asm__("x4") = 0;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
	ret = x0;
#else
#error "raw_fork: x86_64 and aarch64 only"
#endif
	return ret;
}

static __attribute__((noreturn, always_inline)) inline void raw_exit(long code)
{
#if defined(__x86_64__)
	__asm__ volatile("syscall" : : "a"((long)SYS_exit_group), "D"(code) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = SYS_exit_group;
	register long x0 __asm__("x0") = code;
	__asm__ volatile("svc 0" : : "r"(x8), "r"(x0) : "memory");
#endif
	__builtin_unreachable();
}

int main(int argc, char **argv)
{
	/* The array's pages lie a page above its start and below its end, so
	 * that none of them holds main's other locals. */
	volatile char stack[(MAXSTACK + 2) * PAGE];
	if (argc != 6)
		return 2;
	long heap = atol(argv[2]), anon = atol(argv[3]), file = atol(argv[4]), nstack = atol(argv[5]);
	if (heap < 0 || anon < 0 || file < 0 || nstack < 0 || nstack > MAXSTACK)
		return 2;

	volatile char *h = sbrk((heap + 1) * PAGE);
	volatile char *a = mmap(NULL, (anon + 1) * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (h == (void *)-1 || a == MAP_FAILED || fd < 0 || ftruncate(fd, (file + 1) * PAGE) != 0)
		return 1;
	volatile char *f = mmap(NULL, (file + 1) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (f == MAP_FAILED)
		return 1;
	/* Page-aligned starts: sbrk's start need not be. */
	h = (volatile char *)(((unsigned long)h + PAGE - 1) & ~(unsigned long)(PAGE - 1));
	volatile char *s = (volatile char *)(((unsigned long)stack + PAGE - 1) & ~(unsigned long)(PAGE - 1));

	for (long i = 0; i < heap; i++)
		h[i * PAGE] = 1;
	for (long i = 0; i < anon; i++)
		a[i * PAGE] = 1;
	for (long i = 0; i < file; i++)
		f[i * PAGE] = 1;
	for (long i = 0; i < nstack; i++)
		s[i * PAGE] = 1;

	long pid = raw_fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		for (long i = 0; i < heap; i++)
			h[i * PAGE] = 2;
		for (long i = 0; i < anon; i++)
			a[i * PAGE] = 2;
		for (long i = 0; i < file; i++)
			f[i * PAGE] = 2;
		for (long i = 0; i < nstack; i++)
			s[i * PAGE] = 2;
		raw_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1;
	return 0;
}
