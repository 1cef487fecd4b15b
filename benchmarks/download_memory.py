"""Resident memory of a node with many stalled downloads: clients that open a download and never read its body.

    .venv/bin/python benchmarks/download_memory.py [--clients 100] [--size-mib 64] [--max-downloads N]
                                                   [--codex-node PATH]

Starts ``codex-node run --no-marketplace`` in a subprocess on a fresh data dir, uploads one dataset of
``--size-mib`` (larger than what the kernel's socket buffers absorb, so every download really stalls), then opens
``--clients`` connections that each send ``GET /data/{cid}``, read the status line and headers, and stop reading.
It prints the node's RSS before and once it stops changing with the stalled clients, the difference per client,
and how many clients got 200 and how many 503 (over ``--api-max-downloads``). ``--codex-node`` runs another build
(e.g. an older checkout's script) for a before/after comparison; ``--max-downloads`` is passed only when given.

Loopback only; the node and its data dir are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

API = "/api/codex/v1"
MiB = 1 << 20


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def settled_rss(pid: int, *, quiet: float = 3.0, timeout: float = 60.0) -> float:
    """RSS once it has not grown by more than 1 MiB for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = rss_mib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_mib(pid)
        if now > last + 1:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return rss_mib(pid)


def start(script: str, data_dir: Path, log: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    argv = [script, "run", "--data-dir", str(data_dir), "--api-port", "0", "--log-format", "json"]
    argv += ["--no-marketplace", "--storage-quota", "4GiB", *extra]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text[: text.rfind("\n") + 1].splitlines():  # whole lines: the last may be half written
            if '"node started"' in line:
                api = str(json.loads(line)["api"])
                port = int(api.split(":")[2].split("/")[0])
                return proc, api, port
        if proc.poll() is not None:
            raise SystemExit(f"node exited:\n{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("node did not start")


def request(port: int, head: bytes, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body)
    return sock


def read_head(sock: socket.socket) -> int:
    """Read up to the end of the response headers only; returns the status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(1024)
        if not piece:
            break
        data += piece
    return int(data.split(b" ", 2)[1]) if data else 0


def upload(port: int, size: int) -> str:
    head = f"POST {API}/data HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head.encode())
    block = os.urandom(MiB)
    for i in range(size // MiB):
        sock.sendall(block[:-8] + i.to_bytes(8, "big"))  # distinct blocks: no deduplication
    answer = b""
    while piece := sock.recv(65536):
        answer += piece
    sock.close()
    return answer.split(b"\r\n\r\n", 1)[1].decode().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--max-downloads", type=int, default=None)
    parser.add_argument("--codex-node", default=str(Path(sys.executable).with_name("codex-node")))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="download-memory-"))
    extra = [] if args.max_downloads is None else ["--api-max-downloads", str(args.max_downloads)]
    proc, _api, port = start(args.codex_node, work / "data", work / "node.log", extra)
    sockets: list[socket.socket] = []
    try:
        cid = upload(port, args.size_mib * MiB)
        # One whole download first, so code paths and thread pools are warm in the baseline.
        warm = request(port, f"GET {API}/data/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        while warm.recv(1 << 20):
            pass
        warm.close()
        before = settled_rss(proc.pid)
        statuses: dict[int, int] = {}
        for _ in range(args.clients):
            sock = request(port, f"GET {API}/data/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            status = read_head(sock)
            statuses[status] = statuses.get(status, 0) + 1
            sockets.append(sock)
        after = settled_rss(proc.pid)
        served = statuses.get(200, 0)
        print(f"codex-node: {args.codex_node}")
        print(f"clients: {args.clients} stalled, dataset {args.size_mib} MiB, answers {dict(sorted(statuses.items()))}")
        print(f"RSS before: {before:.0f} MiB, with stalled clients: {after:.0f} MiB, growth {after - before:.0f} MiB")
        if served:
            print(f"per served download: {(after - before) / served:.2f} MiB")
    finally:
        for sock in sockets:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
