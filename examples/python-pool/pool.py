"""A pre-fork worker pool in the shape of a web server's: the parent loads
its data, forks workers, and each worker runs a garbage collection, as any
worker that allocates eventually does. With --freeze the parent calls
gc.freeze() before forking (what Instagram did for Django), and the
collector leaves the parent's objects alone.

Each worker prints its own figure: how much its Private_Dirty memory grew
(/proc/self/smaps_rollup), which counts the pages it copied (and the few it
allocated) -- the number cowtrace's copies x 4 KiB is to be set against.

    python3 pool.py [--freeze] [--objects N] [--workers N]
"""
import argparse
import gc
import os
import sys


def private_dirty_kb():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return 0


def worker(n):
    before = private_dirty_kb()
    gc.collect()
    after = private_dirty_kb()
    # One write, so that the workers' lines do not interleave.
    sys.stdout.write(f"worker {os.getpid()}: Private_Dirty grew by {after - before} kB during gc.collect()\n")
    sys.stdout.flush()
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--freeze", action="store_true", help="gc.freeze() before forking")
    ap.add_argument("--objects", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    # Containers are what the collector tracks and walks: one small list
    # (and its item array) per record, as parsed JSON or ORM rows would be.
    data = [[i, i + 1] for i in range(args.objects)]
    if args.freeze:
        gc.freeze()
    print(f"parent {os.getpid()}: {len(data)} objects, gc.freeze() {'called' if args.freeze else 'not called'}, "
          f"{gc.get_freeze_count()} frozen", flush=True)
    pids = []
    for n in range(args.workers):
        pid = os.fork()
        if pid == 0:
            worker(n)
        pids.append(pid)
    status = 0
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        status |= st
    sys.exit(1 if status else 0)


if __name__ == "__main__":
    main()
