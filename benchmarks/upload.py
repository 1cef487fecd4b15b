"""Upload and download throughput through the real HTTP server, as ratios to the machine's raw limits.

    .venv/bin/python benchmarks/upload.py [--size-mib 512] [--server auto|cli|uvicorn] [--sync syncfs|fsync|none]
                                          [--profile] [--dir DIR]

In one run it measures, on the same bytes and the same filesystem:

* the raw ingest limit: sha256 of the bytes plus one sequential write of them to a single file, fsynced;
* ``POST /api/codex/v1/data`` of those bytes with a Content-Length, sent in 1 MiB pieces, until the CID is back;
* the raw read limit: one sequential read of that single file, from the page cache ("hot") and, after asking the
  kernel to drop that file's pages (``posix_fadvise(DONTNEED)``, nothing else is touched), from disk ("cold");
* ``GET /api/codex/v1/data/{cid}`` of the whole dataset, hot, and cold after the same eviction of the block files;

and prints each HTTP throughput with its ratio to the raw one (targets: upload >= 0.5, cold download >= 0.8), then
the store's ingest in-process (no HTTP) with its ratio to the raw ingest (target >= 0.7). The bytes
are pseudo-random 64 KiB blocks, every one distinct, so deduplication cannot flatter the store. The HTTP client is
a plain blocking socket (the request written by hand, the answer read through one reused buffer): an httpx client
costs more CPU than the server on a 2-core machine and would measure itself. Every downloaded byte is checked in a
separate, untimed download.

The server is ``codex-node run`` in a subprocess when the CLI exists (``--server cli``), else uvicorn serving the
data router over a RepoStore in a subprocess (``--server uvicorn``; ``--sync`` picks the block flush policy).
``--profile`` also prints the time the in-process ingest's worker threads spend in each step (hashing, appending to
packs, flushing, LevelDB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar, cast

from codex_node.stores.blockfiles import DEFAULT_SYNC, SyncMode

API = "/api/codex/v1"
MiB = 1 << 20
BLOCK = 64 * 1024
CHUNK = MiB
T = TypeVar("T")


def make_data(size: int) -> bytearray:
    """``size`` bytes of 64 KiB blocks that are all different (a random pool, each block stamped with its index)."""
    pool = os.urandom(8 * MiB)
    out = bytearray(size)
    for i, start in enumerate(range(0, size, BLOCK)):
        n = min(BLOCK, size - start)
        src = start % len(pool)
        out[start : start + n] = pool[src : src + n]
        out[start : start + min(8, n)] = i.to_bytes(8, "big")[: min(8, n)]
    return out


def raw_ingest(data: bytearray, path: Path) -> float:
    """Seconds to sha256 the bytes and write them sequentially to one file, fsynced."""
    view = memoryview(data)
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "wb", buffering=0) as f:
        for i in range(0, len(view), CHUNK):
            digest.update(view[i : i + CHUNK])
            f.write(view[i : i + CHUNK])
        os.fsync(f.fileno())
    return time.perf_counter() - start


def raw_read(path: Path) -> float:
    buf = bytearray(4 * MiB)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - start


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (they are clean after an fsync or a flush)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(kind: str, data_dir: Path, port: int, quota: int, sync: str) -> subprocess.Popen[bytes]:
    if kind == "cli":
        exe = shutil.which("codex-node") or str(Path(sys.executable).with_name("codex-node"))
        cmd = [exe, "run", "--data-dir", str(data_dir), "--api-port", str(port), "--storage-quota", str(quota)]
        cmd += ["--log-level", "warn", "--no-marketplace"]
    else:
        cmd = [sys.executable, __file__, "--serve", str(port), "--data-dir", str(data_dir), "--sync", sync]
        cmd += ["--quota", str(quota)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)


def request(
    port: int,
    method: str,
    path: str,
    body: memoryview | None = None,
    *,
    sink: Callable[[memoryview], object] | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection; returns the status and the body.

    With ``sink``, the body is passed to it piece by piece through one reused 1 MiB buffer and not kept, as a
    download client writing to disk would.
    """
    with socket.create_connection(("127.0.0.1", port)) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        s.sendall((head + "\r\n").encode())
        if body is not None:
            for i in range(0, len(body), CHUNK):
                s.sendall(body[i : i + CHUNK])
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        response = bytearray()
        while b"\r\n\r\n" not in response:
            n = s.recv_into(view)
            if n == 0:
                raise RuntimeError("connection closed before the response headers")
            response += view[:n]
        end = response.index(b"\r\n\r\n")
        status = int(response[9:12])
        if b"transfer-encoding: chunked" in bytes(response[:end]).lower():
            raise RuntimeError("unexpected chunked response: the server sent no Content-Length")
        rest = response[end + 4 :]
        kept = bytearray()
        if sink is None:
            kept += rest
        else:
            sink(memoryview(rest))
        while n := s.recv_into(view):
            if sink is None:
                kept += view[:n]
            else:
                sink(view[:n])
    return status, bytes(kept)


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if request(port, "GET", f"{API}/space")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def http_upload(port: int, data: bytearray) -> tuple[float, str]:
    start = time.perf_counter()
    status, body = request(port, "POST", f"{API}/data", memoryview(data))
    elapsed = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"upload failed: {status} {body[:200]!r}")
    return elapsed, body.decode()


def http_download(port: int, cid: str, expected: bytearray) -> float:
    received = 0

    def count(piece: memoryview) -> None:
        nonlocal received
        received += len(piece)

    start = time.perf_counter()
    status, _ = request(port, "GET", f"{API}/data/{cid}", sink=count)
    elapsed = time.perf_counter() - start
    if status != 200 or received != len(expected):
        raise RuntimeError(f"download failed: status {status}, {received} bytes")
    return elapsed


def verify_download(port: int, cid: str, expected: bytearray) -> None:
    """An untimed download that checks every byte (hashing inside the timed one would measure sha256)."""
    digest = hashlib.sha256()
    status, _ = request(port, "GET", f"{API}/data/{cid}", sink=digest.update)
    if status != 200 or digest.digest() != hashlib.sha256(expected).digest():
        raise RuntimeError("downloaded bytes differ from the uploaded ones")


def profile_ingest(data: bytearray, work: Path, sync: str, t_raw: float, show: bool) -> None:
    """Run the store's ingest in-process (no HTTP), print its ratio to the raw ingest and (``show``) where the
    worker threads spend their time."""
    from codex_node.clock import SystemClock
    from codex_node.data import cid as cidmod
    from codex_node.stores import uploads
    from codex_node.stores.blockfiles import BlockFiles
    from codex_node.stores.datasets import store_dataset
    from codex_node.stores.kv import LevelDBStore
    from codex_node.stores.repostore import RepoStore

    spent: dict[str, float] = defaultdict(float)
    lock = threading.Lock()

    def timed(label: str, fn: Callable[..., T]) -> Callable[..., T]:
        def run(*a: object, **kw: object) -> T:
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                with lock:
                    spent[label] += time.perf_counter() - start

        return run

    kv = LevelDBStore(work / "meta")
    files = BlockFiles(work / "repo", sync=cast(SyncMode, sync))
    files._write_region = timed("append to packs (pwritev)", files._write_region)  # type: ignore[method-assign]
    files._sync = timed(f"flush packs ({sync})", files._sync)  # type: ignore[method-assign]
    kv.write = timed("LevelDB batch writes (sync)", kv.write)  # type: ignore[method-assign]
    kv.get = timed("LevelDB gets", kv.get)  # type: ignore[method-assign]
    uploads.block_cid = timed("sha256 + CID", cidmod.block_cid)  # type: ignore[attr-defined]
    repo = RepoStore(kv, files, clock=SystemClock(), quota_max=4 * len(data), block_ttl=3600, registry=None)
    view = memoryview(data)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(view), CHUNK):
            yield bytes(view[i : i + CHUNK])

    start = time.perf_counter()
    asyncio.run(store_dataset(repo, body()))
    elapsed = time.perf_counter() - start
    print(f"{'in-process ingest (no HTTP)':48s} {len(data) / MiB / elapsed:8.1f} MiB/s   ratio {t_raw / elapsed:.2f}")
    if show:
        print("time in worker threads (summed over threads running in parallel):")
        for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {label:32s} {seconds:7.2f} s")
    repo.close()
    kv.close()


def serve(port: int, data_dir: Path, sync: str, quota: int) -> None:
    """Server mode (subprocess): the data router over a RepoStore, on uvicorn."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from codex_node.api.routes.data import router
    from codex_node.api.services import Services, provide
    from codex_node.clock import SystemClock
    from codex_node.errors import CodexError, InvalidCidError, NotFoundError
    from codex_node.stores.blockfiles import BlockFiles
    from codex_node.stores.kv import LevelDBStore
    from codex_node.stores.repostore import RepoStore

    kv = LevelDBStore(data_dir / "meta")
    files = BlockFiles(data_dir / "repo", sync=cast(SyncMode, sync))
    repo = RepoStore(kv, files, clock=SystemClock(), quota_max=quota, block_ttl=3600)
    app = FastAPI()
    app.include_router(router, prefix=API)
    provide(app, Services(repo=repo))

    @app.exception_handler(CodexError)
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status = 400 if isinstance(exc, InvalidCidError) else 404 if isinstance(exc, NotFoundError) else 422
        return JSONResponse({"error": str(exc)}, status_code=status)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=512)
    p.add_argument("--server", choices=["auto", "cli", "uvicorn"], default="auto")
    p.add_argument("--sync", choices=["syncfs", "fsync", "none"], default=None, help="block flush policy (uvicorn)")
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir under the cwd)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--quota", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    sync = args.sync or DEFAULT_SYNC
    if args.serve is not None:
        serve(args.serve, args.data_dir, sync, args.quota)
        return

    kind = args.server
    if kind == "auto":
        kind = "cli" if importlib.util.find_spec("codex_node.cli") is not None else "uvicorn"
    size = args.size_mib * MiB
    # Same filesystem for the raw baseline and the node's data dir.
    work = Path(tempfile.mkdtemp(prefix="codex-bench-", dir=args.dir or Path.cwd()))
    try:
        print(f"generating {args.size_mib} MiB of distinct 64 KiB blocks …", flush=True)
        data = make_data(size)
        raw_file = work / "raw.bin"
        t_raw = raw_ingest(data, raw_file)

        port = free_port()
        proc = start_server(kind, work / "node", port, 4 * size, sync)
        try:
            wait_ready(port, proc)
            t_up, cid = http_upload(port, data)
            verify_download(port, cid, data)
            t_read_hot = raw_read(raw_file)
            t_down_hot = http_download(port, cid, data)
            evict([raw_file])
            t_read_cold = raw_read(raw_file)
            evict([path for path in (work / "node").rglob("*") if path.is_file()])
            t_down_cold = http_download(port, cid, data)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        mib = size / MiB
        from codex_node.utils.eventloop import http_parser, loop_factory

        fast = f"event loop {'uvloop' if loop_factory() else 'asyncio'}, HTTP parser {http_parser()}"
        print(f"server: {kind}, {fast}" + (f" (block flush: {sync})" if kind == "uvicorn" else ""))
        rows = [
            ("raw ingest (sha256 + sequential write + fsync)", t_raw, None),
            ("HTTP upload", t_up, t_raw / t_up),
            ("raw read, hot (page cache)", t_read_hot, None),
            ("HTTP download, hot", t_down_hot, t_read_hot / t_down_hot),
            ("raw read, cold (disk)", t_read_cold, None),
            ("HTTP download, cold", t_down_cold, t_read_cold / t_down_cold),
        ]
        for label, seconds, ratio in rows:
            print(f"{label:48s} {mib / seconds:8.1f} MiB/s" + ("" if ratio is None else f"   ratio {ratio:.2f}"))
        profile_ingest(data, work / "profile", sync, t_raw, args.profile)
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
