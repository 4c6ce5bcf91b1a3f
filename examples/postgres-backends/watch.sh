#!/bin/sh
# PostgreSQL (Debian's postgresql) under cowtrace watch: a cluster of its
# own in a temporary directory, a postmaster on a unix socket only, and
# three psql connections: the postmaster forks a backend for each, one
# episode each, whose line comes as the connection ends.
#
#   sudo examples/postgres-backends/watch.sh [CONNECTIONS]
#
# COWTRACE names the binary (default: cowtrace in $PATH, else bin/cowtrace).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ct=${COWTRACE:-$(command -v cowtrace || echo "$here/../../bin/cowtrace")}
n=${1:-3}
# Debian leaves the server's programs out of $PATH.
bin=$(dirname "$(readlink -f "$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
dir=$(mktemp -d)
chown postgres "$dir"
as_postgres() { su postgres -s /bin/sh -c "$*"; }
ctpid=
cleanup() {
	[ -z "$ctpid" ] || kill "$ctpid" 2>/dev/null || true
	wait || true
	as_postgres "'$bin/pg_ctl' -D '$dir/data' -m fast stop >/dev/null 2>&1" || true
	rm -rf "$dir"
}
trap cleanup EXIT
as_postgres "'$bin/initdb' -D '$dir/data' -A trust -U postgres --no-sync >/dev/null"
as_postgres "'$bin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -o \"-c listen_addresses='' -k '$dir' -c autovacuum=off\" start >/dev/null"
postmaster=$(head -1 "$dir/data/postmaster.pid")

mkfifo "$dir/ready"
"$ct" watch -p "$postmaster" --ready-fd 3 3>"$dir/ready" &
ctpid=$!
read -r _ <"$dir/ready"
for i in $(seq "$n"); do
	"$bin/psql" -X -q -A -t -h "$dir" -U postgres -c "SELECT count(*) FROM pg_class" >/dev/null
done
sleep 0.5 # the last episode's line, once the postmaster has run again
kill -INT $ctpid
wait $ctpid || true
ctpid=
