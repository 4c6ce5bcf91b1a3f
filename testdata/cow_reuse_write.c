/* Write-protect faults that copy nothing, each followed by a buffered
 * write(2): the parent maps PAGES pages (argv[1], default 2000) of private
 * anonymous memory and writes them all, forks a child that exits at once and
 * waits for it, so every page is write-protected but its own again. It then
 * writes one byte into each page, a write-protect fault that reuses the page
 * (no allocation), and after each appends 4 KiB to the file argv[2] (default
 * cow_reuse_write.out in the working directory), which allocates a
 * page-cache page shaped like a copy's. No page is copied. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	long pages = argc > 1 ? atol(argv[1]) : 2000;
	const char *path = argc > 2 ? argv[2] : "cow_reuse_write.out";
	long page = sysconf(_SC_PAGESIZE);
	static char buf[4096];
	if (pages < 1)
		return 2;
	volatile char *region = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	for (long i = 0; i < pages; i++)
		region[i * page] = 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0)
		_exit(0);
	if (waitpid(pid, NULL, 0) != pid)
		return 1;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return 1;
	memset(buf, 'x', sizeof buf);
	for (long i = 0; i < pages; i++) {
		region[i * page] = 2;
		if (write(fd, buf, sizeof buf) != sizeof buf)
			return 1;
	}
	close(fd);
	unlink(path);
	return 0;
}
