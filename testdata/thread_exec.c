/* A process whose non-leader thread calls exec, as a Go program calling
 * syscall.Exec from a goroutine does: the kernel ends every other thread,
 * the leader too, and gives the exec'ing thread the leader's pid. Each
 * thread first writes pages of a region the process shares with a child it
 * forked, so that every thread has copies of its own. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 64
static volatile char *region;
static long page;

static void write_pages(long from, long n)
{
	for (long i = from; i < from + n; i++)
		region[i * page] = 2;
}

static void *sleeper(void *arg)
{
	write_pages(16, 16);
	pause();
	return arg;
}

static void *execer(void *arg)
{
	write_pages(32, 16);
	usleep(10000);
	execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
	return arg;
}

int main(void)
{
	pthread_t a, b;
	page = sysconf(_SC_PAGESIZE);
	region = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	for (long i = 0; i < PAGES; i++)
		region[i * page] = 1;
	pid_t pid = fork();
	if (pid == 0) {
		write_pages(48, 16);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	pid = fork(); /* shares the region until the exec */
	if (pid == 0) {
		usleep(200000);
		_exit(0);
	}
	write_pages(0, 16);
	pthread_create(&a, NULL, sleeper, NULL);
	pthread_create(&b, NULL, execer, NULL);
	pause();
	return 1;
}
