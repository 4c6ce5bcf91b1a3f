#!/bin/sh
# A Python multiprocessing pool (the fork start method) under cowtrace
# watch: each worker is one episode, whose line comes as the pool is
# joined; mp_pool.py then prints each worker's own figure (how much its
# Private_Dirty grew during its tasks) to set against its copies.
#
#   sudo examples/python-pool/watch.sh [--workers N] [--tasks N] [--objects N]
#
# COWTRACE names the binary (default: cowtrace in $PATH, else bin/cowtrace).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ct=${COWTRACE:-$(command -v cowtrace || echo "$here/../../bin/cowtrace")}
# The interpreter itself: a wrapper (pyenv's shim) would add its own processes.
py=$(python3 -c 'import sys; print(sys.executable)')
exec "$ct" watch -- "$py" "$here/mp_pool.py" "$@"
