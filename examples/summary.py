"""Prints a cowtrace JSON report (--by mapping) as one line per process:
its copies, in bytes, and the mappings they landed in. Used by the
examples' run.sh scripts; python3 is all it needs."""
import json
import sys


def main(path):
    with open(path) as f:
        run = json.load(f)
    for p in run["processes"]:
        if p.get("role") == "thread":
            continue
        by = ", ".join(f"{s['name']} {s['copies']}" for s in p.get("copies_by", [])[:4])
        print(f"  cowtrace: pid {p['pid']} ({p['comm']}, depth {p['depth']}): "
              f"{p['copies']} copies = {p['copies'] * 4096} bytes ({p['copies'] * 4} kB)"
              + (f"; by mapping: {by}" if by else ""))


if __name__ == "__main__":
    main(sys.argv[1])
