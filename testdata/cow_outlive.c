/* For cowtrace attach: a process whose child outlives the trace. It writes
 * every page of a region, then waits for a byte on stdin (the test sends it
 * once cowtrace has attached), forks a child that writes argv[1] pages of
 * the region (copies: the parent shares them) and then sleeps on stdin,
 * writes argv[2] other pages itself (copies too: the child shares them),
 * prints a line on stdout, and sleeps on stdin until EOF. Both are alive
 * when the test ends the trace. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	long child = argc > 1 ? atol(argv[1]) : 1000, parent = argc > 2 ? atol(argv[2]) : 500;
	long page = sysconf(_SC_PAGESIZE), pages = child + parent;
	char b;
	int done[2];
	volatile char *region = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED || pipe(done) < 0)
		return 1;
	madvise((void *)region, pages * page, MADV_NOHUGEPAGE);
	for (long i = 0; i < pages; i++)
		region[i * page] = 1;
	if (read(0, &b, 1) != 1)
		return 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		for (long i = 0; i < child; i++)
			region[i * page] = 2;
		(void)write(done[1], "x", 1);
		while (read(0, &b, 1) > 0)
			;
		_exit(0);
	}
	if (read(done[0], &b, 1) != 1)
		return 1;
	for (long i = child; i < pages; i++)
		region[i * page] = 3;
	printf("written\n");
	fflush(stdout);
	while (read(0, &b, 1) > 0)
		;
	waitpid(pid, NULL, 0);
	return 0;
}
