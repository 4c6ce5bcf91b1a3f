"""A multiprocessing.Pool with the fork start method, as a server that loads
its data and then hands work to a pool would use: the parent builds its
objects, the pool forks its workers, and each task runs a garbage
collection, as any worker that allocates eventually does. The collector
writes the GC header of every object it tracks, so a worker's first task
copies every page of the parent's objects.

Each task returns its worker's own figure: how much the worker's
Private_Dirty memory (/proc/self/smaps_rollup) grew during the task. The
parent prints them summed by worker, next to which cowtrace watch puts each
worker's copies: every worker is one episode.

    python3 mp_pool.py [--workers N] [--tasks N] [--objects N]
"""
import argparse
import gc
import multiprocessing
import os
import sys

data = None


def private_dirty_kb():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return 0


def task(_):
    before = private_dirty_kb()
    gc.collect()
    return os.getpid(), private_dirty_kb() - before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--objects", type=int, default=200_000)
    args = ap.parse_args()

    global data
    # Containers are what the collector tracks and walks: one small list
    # (and its item array) per record, as parsed JSON or ORM rows would be.
    data = [[i, i + 1] for i in range(args.objects)]
    pool = multiprocessing.get_context("fork").Pool(args.workers)
    results = pool.map(task, range(args.tasks), chunksize=1)
    # close and join: the workers exit by themselves, each ending its
    # episode, rather than being terminated.
    pool.close()
    pool.join()
    grew, tasks = {}, {}
    for pid, kb in results:
        grew[pid] = grew.get(pid, 0) + kb
        tasks[pid] = tasks.get(pid, 0) + 1
    print(f"parent {os.getpid()}: {len(data)} objects, {args.workers} workers, {args.tasks} tasks")
    for pid in sorted(grew):
        print(f"worker {pid}: {tasks[pid]} tasks, Private_Dirty grew by {grew[pid]} kB during them")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
