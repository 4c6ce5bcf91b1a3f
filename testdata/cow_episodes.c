/* Episodes of known cost, for cowtrace watch: the parent maps a region of
 * private anonymous memory and writes all of it, then forks N children
 * (argv[1]) one after another. While child i (from 0) lives, the parent
 * writes one byte into each of PARENT pages (argv[3]) of the region, the
 * same ones each time (each fork shares them again), and only then lets
 * the child go on: the child writes one byte into each of CHILD + i%8 pages
 * (argv[2]) of another part and exits, and the parent waits for it before
 * the next fork. Each write is to a page the two share since the fork, so
 * episode i costs the parent PARENT copies and the child CHILD + i%8,
 * beside what libc and the stack copy.
 *
 * With argv[4] = "overlap", children are forked two at a time, and the
 * parent writes its pages while both live: those copies belong to neither
 * alone. With argv[4] = "pause", the parent prints "paused" after each N
 * episodes and waits for a line on stdin: N more for each line, the end at
 * end of file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

static long page;
static volatile char *region;
static long pages, parentPages, childPages;

static pid_t child(int i, int gate)
{
	pid_t pid = fork();
	if (pid < 0)
		exit(1);
	if (pid == 0) {
		char c;
		if (read(gate, &c, 1) != 1)
			_exit(3);
		/* The children's pages follow the parent's. */
		for (long p = 0; p < childPages + i % 8; p++)
			region[(parentPages + p) * page] = 2;
		_exit(0);
	}
	return pid;
}

static void parentWrites(void)
{
	for (long p = 0; p < parentPages; p++)
		region[p * page] = 3;
}

static void episodes(int n, int overlap)
{
	for (int i = 0; i < n; i++) {
		int gate[2];
		if (pipe(gate) < 0)
			exit(1);
		pid_t a = child(i, gate[0]), b = 0;
		if (overlap)
			b = child(i, gate[0]);
		parentWrites();
		if (write(gate[1], "go", overlap ? 2 : 1) < 0)
			exit(1);
		close(gate[0]);
		close(gate[1]);
		int st;
		if (waitpid(a, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			exit(1);
		if (b && (waitpid(b, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
			exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: cow_episodes N CHILD PARENT [overlap|pause]\n");
		return 2;
	}
	int n = atoi(argv[1]);
	childPages = atol(argv[2]);
	parentPages = atol(argv[3]);
	const char *mode = argc > 4 ? argv[4] : "";
	page = sysconf(_SC_PAGESIZE);
	if (n < 1 || childPages < 0 || parentPages < 1)
		return 2;
	pages = parentPages + childPages + 8;
	region = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 1;
	for (long p = 0; p < pages; p++)
		region[p * page] = 1;
	episodes(n, strcmp(mode, "overlap") == 0);
	if (strcmp(mode, "pause") == 0) {
		char line[16];
		for (;;) {
			printf("paused\n");
			fflush(stdout);
			if (!fgets(line, sizeof line, stdin))
				break;
			episodes(n, 0);
		}
	}
	return 0;
}
