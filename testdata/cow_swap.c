/* Parent and children taking turns on one CPU, which is when the kernel
 * may swap their perf event contexts instead of switching events (see
 * perfevents.OpenSwapGuard). The process pins itself to the CPU it runs
 * on, maps PAGES pages and, ROUNDS times (argv[1], default 20), writes
 * every page (the first round's are first writes, every later round's
 * write-protect faults on pages the last child shared), forks a child that
 * writes every page and exits, and yields to it until it is done. Each
 * child takes PAGES write-protect faults in the region; the parent
 * (ROUNDS - 1) * PAGES. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 1024

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 20;
	long page = sysconf(_SC_PAGESIZE);
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	if (rounds < 1 || sched_setaffinity(0, sizeof one, &one) != 0)
		return 2;
	volatile char *region = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	/* Base pages on every kernel: with transparent huge pages the parent,
	 * whose pages are its own again once the child exits, would take one
	 * fault per huge page. */
	madvise((void *)region, PAGES * page, MADV_NOHUGEPAGE);
	for (int r = 0; r < rounds; r++) {
		for (long i = 0; i < PAGES; i++)
			region[i * page] = r;
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			for (long i = 0; i < PAGES; i++)
				region[i * page] = 1;
			_exit(0);
		}
		int status;
		while (waitpid(pid, &status, WNOHANG) == 0)
			sched_yield();
	}
	return 0;
}
