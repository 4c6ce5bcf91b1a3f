/* The seed's program (a parent fills 1000 blocks of 102400 bytes, forks a
 * reader child and a writer child that read or write the byte at offset
 * 10240 of every block, and waits for both), without its sleeps: cowtrace
 * run's gate replaces them. Results go to stderr, which has no stdio buffer
 * to allocate, so each process's own faults stay few. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>

#define BLOCKS 1000
#define BLOCK_SIZE 102400
#define OFFSET 10240

int main(void)
{
	static char *ptr[BLOCKS];
	for (int i = 0; i < BLOCKS; i++) {
		ptr[i] = malloc(BLOCK_SIZE);
		if (ptr[i] == NULL)
			return 1;
		memset(ptr[i], '0', BLOCK_SIZE);
	}

	pid_t reader = fork();
	if (reader < 0)
		return 1;
	if (reader == 0) {
		unsigned sum = 0;
		for (int i = 0; i < BLOCKS; i++)
			sum += (unsigned char)ptr[i][OFFSET];
		fprintf(stderr, "reader(%d) sum %u\n", getpid(), sum);
		_exit(0);
	}
	pid_t writer = fork();
	if (writer < 0)
		return 1;
	if (writer == 0) {
		for (int i = 0; i < BLOCKS; i++)
			ptr[i][OFFSET] = 'C';
		fprintf(stderr, "writer(%d) done\n", getpid());
		_exit(0);
	}
	int status;
	while (wait(&status) > 0)
		;
	unsigned sum = 0;
	for (int i = 0; i < BLOCKS; i++)
		sum += (unsigned char)ptr[i][OFFSET];
	fprintf(stderr, "parent(%d) sum %u\n", getpid(), sum);
	return 0;
}
