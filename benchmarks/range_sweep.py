"""How the range size and the number of connections of extpack's ranged download behave on
the link model: the download step alone (no unpack), of one workload zip, per setting.

    python benchmarks/range_sweep.py [--layer 4] [--runs 3] [--link s3]

Starts the benchmark's server with the link model, then for each (range size, connections)
runs extpack's download() of the zip in a fresh process (the server's threads must not share
a GIL with the client's) and prints the median wall time of the download call itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MiB = 1 << 20
SETTINGS = [(None, 1), (4 * MiB, 4), (8 * MiB, 4), (8 * MiB, 8), (16 * MiB, 8), (8 * MiB, 16), (4 * MiB, 16)]

_CLIENT = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from extpack import download, ranged
url, size, sha, part, conns, path = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]
if part == "none":
    ranged.plan = lambda size: None
else:
    ranged.TARGET_PART, ranged.MIN_RANGED, ranged.MAX_CONNECTIONS = int(part), 0, conns
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
start = time.perf_counter()
got = download.download(url, fd, download.Expected(sha, size, size), layer="sweep")
print(json.dumps({"seconds": time.perf_counter() - start, "ok": got == sha}))
"""


def main() -> int:
    import link as link_model
    import make_workload
    from run import REGION, REPO, WORK, BenchLambda

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=4, help="which workload zip (1-4, default 4: the largest)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--link", default="s3", choices=sorted(link_model.MODELS))
    args = parser.parse_args()
    workload = make_workload.ensure(WORK, log=lambda message: None)
    layer = workload[args.layer - 1]
    server = BenchLambda(chunk_size=1 << 20)
    server.start()
    server.link = link_model.Link(link_model.MODELS[args.link])
    try:
        lv = server.add_layer("sweep", layer.path, region=REGION)
        print(f"{layer.name}: {layer.size / 1e6:.1f} MB; link floor of the transfer alone "
              f"{layer.size / server.link.model.total + server.link.model.first_byte:.3f} s")
        with tempfile.TemporaryDirectory(dir="/dev/shm") as scratch:
            for part, conns in SETTINGS:
                times = []
                for _ in range(args.runs):
                    url = server._mint(lv)
                    out = subprocess.run([sys.executable, "-c", _CLIENT, str(REPO), url, str(lv.size), lv.sha256_hex,
                                          str(part or "none"), str(conns), f"{scratch}/zip"],
                                         check=True, capture_output=True, text=True)
                    result = json.loads(out.stdout)
                    assert result["ok"]
                    times.append(result["seconds"])
                label = "one stream" if part is None else f"{part // MiB:>2} MiB x {conns:>2} connections"
                print(f"{label:<28} {statistics.median(times):.3f} s  (min {min(times):.3f})", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
