#!/bin/sh
# Redis (Debian's redis-server) under cowtrace attach --by mapping, twice:
#  1. appendonly writes: the AOF is written with write(), nothing forks, and
#     cowtrace counts no copy at all;
#  2. a BGSAVE under the same writes: the save child shares every page with
#     the server, each write the server makes copies one, and Redis's own
#     figure, rdb_last_cow_size (the child's Private_Dirty at its end), is
#     printed next to cowtrace's copies of the server and the child.
#
#   sudo examples/redis-snapshot/run.sh [KEYS [WRITES]]
#
# COWTRACE names the binary (default: cowtrace in $PATH, else bin/cowtrace).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ct=${COWTRACE:-$(command -v cowtrace || echo "$here/../../bin/cowtrace")}
keys=${1:-40000}
writes=${2:-4000}
dir=$(mktemp -d)
redis-server --port 0 --unixsocket "$dir/redis.sock" --dir "$dir" --save '' \
	--appendonly yes --auto-aof-rewrite-percentage 0 --enable-debug-command local \
	--daemonize no --logfile "$dir/redis.log" &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$dir"' EXIT
cli() { redis-cli -s "$dir/redis.sock" "$@"; }
i=0
until cli ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "redis-server did not start" >&2; exit 1; }
	sleep 0.05
done
cli DEBUG POPULATE "$keys" key 1000 >/dev/null

# SETs of random existing keys, pipelined through one redis-cli.
load() {
	awk -v n="$writes" -v keys="$keys" -v seed="$1" 'BEGIN {
		srand(seed); v = sprintf("%1000s", ""); gsub(/ /, "w", v)
		for (i = 0; i < n; i++) printf "SET key:%d %s\n", int(rand() * keys), v
	}' | cli >/dev/null
}

# attach starts cowtrace on the server and returns once it is attached.
attach() {
	rm -f "$dir/ready"; mkfifo "$dir/ready"
	"$ct" attach -p "$rpid" --by mapping --format json -o "$dir/$1.json" --ready-fd 3 3>"$dir/ready" 2>/dev/null &
	ctpid=$!
	read -r _ <"$dir/ready"
}
detach() { kill -INT "$ctpid"; wait "$ctpid" || true; }

echo "== 1. $writes SETs with appendonly yes, no fork"
attach aof
load 1
detach
python3 "$here/../summary.py" "$dir/aof.json"

echo "== 2. BGSAVE under $writes SETs (rdb-key-save-delay 20 us per key)"
cli CONFIG SET rdb-key-save-delay 20 >/dev/null
attach bgsave
cli BGSAVE >/dev/null
load 2
while cli INFO persistence | grep -q '^rdb_bgsave_in_progress:1'; do sleep 0.05; done
detach
python3 "$here/../summary.py" "$dir/bgsave.json"
cow=$(cli INFO persistence | sed -n 's/^rdb_last_cow_size:\([0-9]*\).*/\1/p')
python3 - "$dir/bgsave.json" "$cow" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
cow = int(sys.argv[2])
copies = sum(p["copies"] for p in run["processes"])
child = [p for p in run["processes"] if p["depth"] == 1]
new = sum(p["outside"]["write_not_present"] + p["outside"]["read"] for p in child)
print(f"  redis:    rdb_last_cow_size {cow} bytes ({cow // 4096} pages)")
print(f"  cowtrace: server + child {copies} copies = {copies * 4096} bytes; "
      f"difference {cow - copies * 4096} bytes ({(cow - copies * 4096) // 4096} pages), "
      f"within the child's own first-touch pages ({new})")
PY
