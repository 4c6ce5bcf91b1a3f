/* The 1 GiB fork workload of issue 11: the parent writes every page of N
 * pages (argv[1], 4 KiB each on x86) of private anonymous memory, forks one
 * child that writes one byte into each page, so that every page takes one
 * write-protect fault and one copy in the child, and waits for it. Then the
 * parent names the child ("writer pid N" on stderr), so that tools that
 * count by pid system-wide can be read; it prints with one write(2) and no
 * stdio buffer, so that its own faults stay few. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	long pages = atol(argv[1]);
	long page = sysconf(_SC_PAGESIZE);
	if (pages < 1 || page < 1)
		return 2;
	size_t len = (size_t)pages * (size_t)page;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	/* One fault and one copy per base page even where THP is "always". */
	(void)madvise(mem, len, MADV_NOHUGEPAGE);
	memset(mem, '0', len);

	pid_t child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		for (long i = 0; i < pages; i++)
			mem[i * page] = 'C';
		_exit(0);
	}
	int status;
	if (waitpid(child, &status, 0) != child)
		return 1;
	char line[32] = "writer pid ", digits[16];
	int n = 0, at = 11;
	for (long v = child; v > 0; v /= 10)
		digits[n++] = '0' + v % 10;
	while (n > 0)
		line[at++] = digits[--n];
	line[at++] = '\n';
	if (write(2, line, at) != at)
		return 1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
