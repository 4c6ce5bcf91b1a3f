/* For cowtrace attach: waits until a byte arrives on stdin (the test sends
 * it once cowtrace has attached), then does what cow_tree does with N
 * children (argv[1], default 3), then waits for another byte or EOF before
 * exiting, so that the test decides whether it exits during the trace. */
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 64

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 3;
	long page = sysconf(_SC_PAGESIZE);
	char b;
	volatile char *region = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED || n < 1 || n > PAGES)
		return 1;
	for (long i = 0; i < PAGES; i++)
		region[i * page] = 1;
	if (read(0, &b, 1) != 1)
		return 1;
	for (int c = 0; c < n; c++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			for (long i = 0; i <= c; i++)
				region[i * page] = 2;
			_exit(0);
		}
	}
	int st;
	while (wait(&st) > 0)
		;
	(void)read(0, &b, 1);
	return 0;
}
