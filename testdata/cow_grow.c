/* Six processes that write after fork, for the regression gate's tests: the
 * parent writes every page of a private anonymous region and forks two
 * children; the first forks one grandchild, the second two. Each of the five
 * then writes one byte into each of the region's first N pages (argv[1],
 * default 500) and waits for its own children. The parent keeps the original
 * pages mapped until everyone is done, so every one of those writes takes a
 * write-protect fault and copies a page: run with 600 instead of 500, the
 * program writes 20% more pages after fork and nothing else changes. */
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 4096

static volatile char *region;
static long page;

/* child forks `kids` children that write and exit, then writes itself. */
static void child(int kids, long n)
{
	for (int k = 0; k < kids; k++) {
		pid_t pid = fork();
		if (pid < 0)
			_exit(1);
		if (pid == 0) {
			child(0, n);
			_exit(0);
		}
	}
	for (long i = 0; i < n; i++)
		region[i * page] = 2;
	int st;
	while (wait(&st) > 0)
		;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 500;
	page = sysconf(_SC_PAGESIZE);
	if (n < 1 || n > PAGES)
		return 2;
	region = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	/* 4 KiB pages on every kernel: one fault and one copy per page. */
	madvise((void *)region, PAGES * page, MADV_NOHUGEPAGE);
	for (long i = 0; i < PAGES; i++)
		region[i * page] = 1;
	for (int c = 1; c <= 2; c++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			child(c, n);
			_exit(0);
		}
	}
	int st;
	while (wait(&st) > 0)
		;
	return 0;
}
