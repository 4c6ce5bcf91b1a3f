/* A tree of short-lived children: the parent maps PAGES pages of private
 * anonymous memory and writes all of them, then forks N children (argv[1],
 * default 50); child i writes one byte into each of its first i+1 pages and
 * exits at once, so it takes exactly i+1 write-protect faults in the region
 * on top of a baseline that is the same for every child. The parent waits
 * for all of them and exits with status argv[2] (default 0). */
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 256

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 50;
	int status = argc > 2 ? atoi(argv[2]) : 0;
	long page = sysconf(_SC_PAGESIZE);
	if (n < 1 || n > PAGES)
		return 2;
	volatile char *region = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	for (long i = 0; i < PAGES; i++)
		region[i * page] = 1;
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
	return status;
}
