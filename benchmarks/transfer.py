"""Moving a 1 GiB CAD file through tezgah: tus upload, attach as a version, streamed download.

``tezgah serve`` (one worker, SQLite and local blobs in a temporary var directory) receives a
1 GiB binary STL (random-ish triangles; a valid file, so attaching it only detects the format)
through tus with the ``tuspy`` client (SHA-256 checksum on every chunk), the finished upload is
attached as a design's version, and the file is downloaded from the version's file route with
streaming httpx into /dev/null, its SHA-256 checked (and once more with curl, a C client, to tell
the server's limit from the Python client's). The baseline runs on the same disk in the
same run: ``shutil.copyfile`` of the same file (plus an fsync, as the server syncs what it stores)
and reading the copy back through SHA-256. The server's RSS is sampled every 50 ms during the
transfers; its peak growth over the idle server is reported (target: under 64 MiB).

    python -m benchmarks.transfer [--rounds 3] [--chunk-mib 32] [--dir /path/on/the/disk]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tusclient.client import TusClient
from tusclient.uploader import Uploader

from benchmarks.http_stack import BIN, RESULTS_DIR, free_port

STL_HEADER_BYTES = 80
STL_TRIANGLE_BYTES = 50
TARGET_BYTES = 1024**3
# 84 + 50 n bytes: the largest valid binary STL not over 1 GiB.
TRIANGLES = (TARGET_BYTES - STL_HEADER_BYTES - 4) // STL_TRIANGLE_BYTES
FILE_BYTES = STL_HEADER_BYTES + 4 + STL_TRIANGLE_BYTES * TRIANGLES
RANDOM_BLOCK = 16 * 1024 * 1024
READ_CHUNK = 1024 * 1024
SAMPLE_SECONDS = 0.05
TARGET_GROWTH_MIB = 64
MB = 1_000_000
MIB = 1024 * 1024
PASSWORD = "Benchmark-Passw0rd-tezgah"  # noqa: S105 - a throwaway benchmark account

T = TypeVar("T")


# The file ---------------------------------------------------------------------------------------


def write_stl(path: Path) -> str:
    """A valid binary STL of :data:`FILE_BYTES` bytes; returns its SHA-256. The triangles are a
    16 MiB block of random bytes repeated: incompressible enough, and quick to make."""
    digest = hashlib.sha256()
    block = os.urandom(RANDOM_BLOCK)
    with path.open("wb") as handle:
        head = b"tezgah transfer benchmark".ljust(STL_HEADER_BYTES, b" ")
        head += struct.pack("<I", TRIANGLES)
        handle.write(head)
        digest.update(head)
        remaining = FILE_BYTES - len(head)
        while remaining:
            piece = block[: min(remaining, len(block))]
            handle.write(piece)
            digest.update(piece)
            remaining -= len(piece)
    return digest.hexdigest()


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


def copy_baseline(source: Path, target: Path) -> tuple[float, float, float]:
    """(copyfile seconds, fsync seconds, read-back-and-hash seconds); the copy is removed."""
    _, copy_seconds = timed(lambda: shutil.copyfile(source, target))

    def sync() -> None:
        descriptor = os.open(target, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    _, sync_seconds = timed(sync)
    _, read_seconds = timed(lambda: sha256_of(target))
    target.unlink()
    return copy_seconds, sync_seconds, read_seconds


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# The server's memory ------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")


@dataclass
class RssSampler:
    """Samples a process's RSS every :data:`SAMPLE_SECONDS` while started; keeps the peak of
    each phase."""

    pid: int
    phase: str = "idle"
    peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes(self.pid)
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), value)
            self.samples += 1
            self._stop.wait(SAMPLE_SECONDS)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextmanager
    def during(self, phase: str) -> Iterator[None]:
        self.phase = phase
        try:
            yield
        finally:
            self.peaks[phase] = max(self.peaks.get(phase, 0), rss_bytes(self.pid))
            self.phase = "between"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_rss(pid: int, seconds: float = 1.0) -> int:
    """The median RSS of the idle server over ``seconds``."""
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        values.append(rss_bytes(pid))
        time.sleep(SAMPLE_SECONDS)
    return int(statistics.median(values))


# The server -----------------------------------------------------------------------------------


class Sha256Uploader(Uploader):
    """tuspy sends SHA-1 checksums by default; tezgah speaks SHA-256. Times every PATCH."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_seconds: list[float] = []

    def upload_chunk(self) -> None:
        started = time.perf_counter()
        super().upload_chunk()
        self.chunk_seconds.append(time.perf_counter() - started)


@dataclass
class Server:
    var_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    workspace_id: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TEZGAH_")}
        env.update(
            {
                "TEZGAH_ENV": "test",
                "TEZGAH_VAR_DIR": str(self.var_dir),
                "TEZGAH_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
                "TEZGAH_LOG_LEVEL": "WARNING",
                "TEZGAH_UPLOAD_MAX_BYTES": str(4 * 1024**3),
                "TEZGAH_UPLOAD_QUOTA_BYTES": str(64 * 1024**3),
                "TEZGAH_ACCESS_TOKEN_TTL_SECONDS": "3600",
                "TEZGAH_RATE_LIMIT_DEFAULT": "1000000/minute",
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            }
        )
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        return env

    def start(self) -> None:
        env = self.environment()
        subprocess.run([str(BIN / "tezgah"), "db", "upgrade"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(BIN / "tezgah"), "serve", "--port", str(self.port), "--workers", "1"],
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tezgah serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("tezgah serve did not become healthy")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def sign_up(self) -> None:
        email = f"transfer-{uuid.uuid4().hex[:8]}@example.com"
        with httpx.Client(base_url=self.url, timeout=60) as http:
            created = http.post(
                "/api/v1/auth/register",
                json={"email": email, "password": PASSWORD, "display_name": "Transfer"},
            )
            created.raise_for_status()
            token = http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
            token.raise_for_status()
            self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            workspaces = http.get("/api/v1/workspaces", headers=self.headers)
            workspaces.raise_for_status()
            personal = [w for w in workspaces.json()["items"] if w["is_personal"]]
            self.workspace_id = personal[0]["id"]


# One round --------------------------------------------------------------------------------------


@dataclass
class Round:
    copy_s: float
    fsync_s: float
    read_back_s: float
    upload_s: float
    upload_patches: int
    last_patch_s: float
    attach_s: float
    download_s: float
    # The same download by curl (a C client, no hashing): tells the server's limit from the
    # Python client's. None without curl.
    curl_download_s: float | None
    server_cpu_s: dict[str, float]
    rss_idle_mib: float
    rss_peak_mib: dict[str, float]

    @property
    def upload_mb_s(self) -> float:
        return FILE_BYTES / MB / self.upload_s

    @property
    def download_mb_s(self) -> float:
        return FILE_BYTES / MB / self.download_s

    @property
    def copy_mb_s(self) -> float:
        return FILE_BYTES / MB / self.copy_s

    @property
    def durable_copy_mb_s(self) -> float:
        return FILE_BYTES / MB / (self.copy_s + self.fsync_s)

    @property
    def read_back_mb_s(self) -> float:
        return FILE_BYTES / MB / self.read_back_s

    @property
    def growth_mib(self) -> float:
        return max(self.rss_peak_mib.values()) - self.rss_idle_mib


def upload(server: Server, source: Path, chunk_bytes: int) -> tuple[str, Sha256Uploader, float]:
    client = TusClient(f"{server.url}/api/v1/uploads", headers=server.headers)
    uploader = Sha256Uploader(
        file_path=str(source),
        client=client,
        chunk_size=chunk_bytes,
        metadata={"workspace_id": server.workspace_id, "filename": source.name},
        upload_checksum=True,
    )
    _, seconds = timed(uploader.upload)
    assert uploader.url is not None
    return uploader.url.rstrip("/").rsplit("/", 1)[1], uploader, seconds


def attach(http: httpx.Client, design_id: str, upload_id: str) -> dict[str, Any]:
    response = http.post(f"/api/v1/designs/{design_id}/versions", json={"upload_id": upload_id})
    if response.status_code != 201:
        raise RuntimeError(f"attaching answered {response.status_code}: {response.text[:500]}")
    version: dict[str, Any] = response.json()
    if version["format"] != "stl" or version["size"] != FILE_BYTES:
        raise RuntimeError(f"unexpected version {version}")
    return version


def download(http: httpx.Client, url: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with (
        http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
        open(os.devnull, "wb") as sink,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"download answered {response.status_code}")
        for chunk in response.iter_raw(READ_CHUNK):
            digest.update(chunk)
            sink.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def curl_download(server: Server, path: str) -> float | None:
    """Seconds curl takes to fetch the file into /dev/null (checking only the size)."""
    if shutil.which("curl") is None:
        return None
    command = ["curl", "-sS", "-o", os.devnull, "-w", "%{size_download} %{time_total}"]
    command += ["-H", f"Authorization: {server.headers['Authorization']}", server.url + path]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    if int(output[0]) != FILE_BYTES:
        raise RuntimeError(f"curl downloaded {output[0]} bytes")
    return float(output[1])


def one_round(
    server: Server, sampler: RssSampler, source: Path, sha256: str, chunk_bytes: int
) -> Round:
    copy_s, fsync_s, read_back_s = copy_baseline(source, source.with_suffix(".copy"))
    rss_idle = idle_rss(server.pid)
    sampler.peaks.clear()
    cpu: dict[str, float] = {}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as http:
        created = http.post("/api/v1/designs", json={"name": f"Transfer {uuid.uuid4().hex[:6]}"})
        created.raise_for_status()
        design_id = created.json()["id"]
        started = cpu_seconds(server.pid)
        with sampler.during("upload"):
            upload_id, uploader, upload_s = upload(server, source, chunk_bytes)
        cpu["upload"], started = cpu_seconds(server.pid) - started, cpu_seconds(server.pid)
        with sampler.during("attach"):
            version, attach_s = timed(lambda: attach(http, design_id, upload_id))
        cpu["attach"], started = cpu_seconds(server.pid) - started, cpu_seconds(server.pid)
        with sampler.during("download"):
            (got, size), download_s = timed(lambda: download(http, version["download_url"]))
        cpu["download"] = cpu_seconds(server.pid) - started
        curl_s = curl_download(server, version["download_url"])
    if got != sha256 or size != FILE_BYTES:
        raise RuntimeError(f"downloaded {size} bytes with SHA-256 {got}, expected {sha256}")
    return Round(
        copy_s=copy_s,
        fsync_s=fsync_s,
        read_back_s=read_back_s,
        upload_s=upload_s,
        upload_patches=len(uploader.chunk_seconds),
        last_patch_s=uploader.chunk_seconds[-1],
        attach_s=attach_s,
        download_s=download_s,
        curl_download_s=curl_s,
        server_cpu_s=cpu,
        rss_idle_mib=rss_idle / MIB,
        rss_peak_mib={phase: peak / MIB for phase, peak in sampler.peaks.items()},
    )


# Report -----------------------------------------------------------------------------------------


def report(rounds: list[Round], chunk_mib: int, make_s: float) -> dict[str, Any]:
    def median(values: Callable[[Round], float]) -> float:
        return statistics.median(values(r) for r in rounds)

    upload_mb_s = median(lambda r: r.upload_mb_s)
    download_mb_s = median(lambda r: r.download_mb_s)
    copy_mb_s = median(lambda r: r.copy_mb_s)
    durable_mb_s = median(lambda r: r.durable_copy_mb_s)
    read_mb_s = median(lambda r: r.read_back_mb_s)
    growth = max(r.growth_mib for r in rounds)
    phases = {p: max(r.rss_peak_mib.get(p, 0) - r.rss_idle_mib for r in rounds) for p in
              ("upload", "attach", "download")}  # fmt: skip
    print(
        f"\n{FILE_BYTES} bytes binary STL ({FILE_BYTES / MIB:.0f} MiB, made in {make_s:.1f}s), "
        f"tus chunks of {chunk_mib} MiB with SHA-256, {len(rounds)} rounds; medians, "
        "MB = 10^6 bytes"
    )
    print(
        f"upload   (tus POST + PATCHes)      {upload_mb_s:7.1f} MB/s  "
        f"ratio to copyfile {upload_mb_s / copy_mb_s:.2f}, to copyfile+fsync "
        f"{upload_mb_s / durable_mb_s:.2f}"
    )
    print(
        f"download (GET version file, sha256) {download_mb_s:6.1f} MB/s  "
        f"ratio to read-back {download_mb_s / read_mb_s:.2f}"
    )
    curl_times = [r.curl_download_s for r in rounds if r.curl_download_s]
    curl_mb_s = FILE_BYTES / MB / statistics.median(curl_times) if curl_times else None
    if curl_mb_s is not None:
        print(
            f"download (same route, curl, no hash) {curl_mb_s:6.1f} MB/s  "
            f"ratio to read-back {curl_mb_s / read_mb_s:.2f}"
        )
    print(f"copy     (shutil.copyfile)          {copy_mb_s:6.1f} MB/s")
    print(f"copy + fsync                        {durable_mb_s:6.1f} MB/s")
    print(f"read back (sha256)                  {read_mb_s:6.1f} MB/s")
    print(
        f"upload detail: last PATCH (includes moving the file into the blob store) "
        f"{median(lambda r: r.last_patch_s):.2f}s of {median(lambda r: r.upload_s):.2f}s; "
        f"attach {median(lambda r: r.attach_s) * 1000:.0f} ms"
    )
    print(
        "server CPU seconds: "
        + ", ".join(
            f"{phase} {median(lambda r, phase=phase: r.server_cpu_s[phase]):.2f}"
            for phase in ("upload", "attach", "download")
        )
        + f" (the upload's wall time is {median(lambda r: r.upload_s):.2f}s, the download's "
        f"{median(lambda r: r.download_s):.2f}s)"
    )
    verdict = "meets" if growth < TARGET_GROWTH_MIB else "MISSES"
    print(
        f"server RSS: idle {median(lambda r: r.rss_idle_mib):.1f} MiB; peak growth "
        + ", ".join(f"{phase} {value:.1f}" for phase, value in phases.items())
        + f" MiB; max {growth:.1f} MiB ({verdict} target < {TARGET_GROWTH_MIB} MiB)"
    )
    return {
        "upload_mb_s": round(upload_mb_s, 1),
        "download_mb_s": round(download_mb_s, 1),
        "curl_download_mb_s": round(curl_mb_s, 1) if curl_mb_s else None,
        "copy_mb_s": round(copy_mb_s, 1),
        "copy_fsync_mb_s": round(durable_mb_s, 1),
        "read_back_mb_s": round(read_mb_s, 1),
        "ratio_upload_copy": round(upload_mb_s / copy_mb_s, 3),
        "ratio_upload_copy_fsync": round(upload_mb_s / durable_mb_s, 3),
        "ratio_download_read_back": round(download_mb_s / read_mb_s, 3),
        "rss_growth_mib": round(growth, 1),
        "rss_growth_by_phase_mib": {k: round(v, 1) for k, v in phases.items()},
        "target_growth_mib": TARGET_GROWTH_MIB,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, default=32, help="tus PATCH size")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (one disk)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tezgah-bench-transfer-", dir=args.dir) as temp:
        root = Path(temp)
        source = root / "part.stl"
        sha256, make_s = timed(lambda: write_stl(source))
        server = Server(root / "var")
        server.start()
        sampler = RssSampler(server.pid)
        try:
            server.sign_up()
            sampler.start()
            rounds = []
            for number in range(1, args.rounds + 1):
                result = one_round(server, sampler, source, sha256, args.chunk_mib * MIB)
                rounds.append(result)
                print(
                    f"round {number}: upload {result.upload_mb_s:.0f} MB/s "
                    f"({result.upload_patches} PATCHes), download {result.download_mb_s:.0f} "
                    f"MB/s, copy {result.copy_mb_s:.0f} MB/s (+fsync "
                    f"{result.durable_copy_mb_s:.0f}), read back {result.read_back_mb_s:.0f} "
                    f"MB/s, RSS growth {result.growth_mib:.1f} MiB",
                    flush=True,
                )
        finally:
            sampler.stop()
            server.stop()
        summary = report(rounds, args.chunk_mib, make_s)
    result = {
        "benchmark": "transfer",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "file_bytes": FILE_BYTES,
        "chunk_mib": args.chunk_mib,
        "rss_samples": sampler.samples,
        "rounds": [asdict(r) for r in rounds],
        **summary,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"transfer-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
