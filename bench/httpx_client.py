"""bench/httpx_client.py: Python's httpx as a peer of the end-to-end benchmark.

    /usr/bin/python3 bench/httpx_client.py URL

Reads one SSE response the way Python scripts usually do: httpx.stream()
and iter_lines(), with a line-based parse (data:, event:, id: fields; a blank
line dispatches). Per event: count it, add len(data). Prints
"BENCH-REPORT {json}". Debian's python3-httpx (make bench installs it).
"""
import json
import sys

import httpx


def main(url):
    n = 0
    length = 0
    data = []
    event = ""
    last_id = ""
    with httpx.stream("GET", url, timeout=None) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            # httpx before 0.24 (Debian 12 has 0.23) keeps the line ending
            line = line.rstrip("\r\n")
            if not line:
                if data:
                    d = "\n".join(data)
                    n += 1
                    length += len(d)
                    data = []
                event = ""
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "id":
                last_id = value
    print("BENCH-REPORT " + json.dumps({"events": n, "codepoints": length,
                                        "httpx": httpx.__version__,
                                        "last_id": last_id, "event": event}))


if __name__ == "__main__":
    main(sys.argv[1])
