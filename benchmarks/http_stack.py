"""Throughput of ``/health`` through tezgah's full middleware stack against a bare Starlette app.

Both servers run under uvicorn with one worker and are driven by wrk (64 connections, 2 threads).
Rounds alternate full / bare so that machine noise hits both alike; the figure that matters is the
ratio of medians (target: the full stack keeps at least 0.5 of the bare throughput).

    python -m benchmarks.http_stack [--rounds 3] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

RESULTS_DIR = Path(__file__).parent / "results"
BIN = Path(sys.executable).parent
TARGET_RATIO = 0.5
CONNECTIONS = 64
THREADS = 2
UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Sample:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Target:
    name: str
    app: str
    factory: bool


FULL = Target("tezgah full stack", "tezgah.main:create_app", factory=True)
BARE = Target("bare Starlette", "benchmarks.bare_app:app", factory=False)
BARE_HEADERS = Target("bare + same headers", "benchmarks.bare_app:app_with_headers", factory=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * UNIT_TO_MS[match.group(2)]


def parse_wrk(output: str) -> Sample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise ValueError(f"could not parse wrk output:\n{output}")
    errors = sum(
        int(value) for value in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Sample(
        float(rps.group(1)), _milliseconds(p50.group(1)), _milliseconds(p99.group(1)), errors
    )


def server_environment(var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TEZGAH_ENV": "test",
            "TEZGAH_VAR_DIR": str(var_dir),
            # No request limit: the benchmark measures the stack, not the limiter's 429 path.
            "TEZGAH_RATE_LIMIT_DEFAULT": "100000000/minute",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
    )
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def start_server(target: Target, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [str(BIN / "python"), "-m", "uvicorn", target.app, "--port", str(port)]
    command += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    if target.factory:
        command.append("--factory")
    # The full stack's JSON access log is part of its cost: it is written, to /dev/null.
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"{target.name} did not start")


def drive(
    port: int,
    duration: int,
    path: str = "/health",
    headers: dict[str, str] | None = None,
    connections: int = CONNECTIONS,
) -> Sample:
    threads = min(THREADS, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def measure(target: Target, env: dict[str, str], duration: int) -> Sample:
    port = free_port()
    server = start_server(target, port, env)
    try:
        drive(port, 2)  # warm-up: imports, caches, connection set-up
        return drive(port, duration)
    finally:
        server.terminate()
        server.wait(timeout=15)


def median_sample(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.requests_per_second for s in samples),
        statistics.median(s.p50_ms for s in samples),
        statistics.median(s.p99_ms for s in samples),
        sum(s.errors for s in samples),
    )


def report(samples: dict[str, Sample], rounds: int, duration: int) -> dict[str, object]:
    full, bare, bare_headers = samples[FULL.name], samples[BARE.name], samples[BARE_HEADERS.name]
    ratio = full.requests_per_second / bare.requests_per_second
    header_ratio = full.requests_per_second / bare_headers.requests_per_second
    print(f"\n/health, wrk -t{THREADS} -c{CONNECTIONS}, {rounds} alternating rounds of {duration}s")
    print(f"{'':22} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for name, sample in samples.items():
        print(
            f"{name:22} {sample.requests_per_second:10.0f} {sample.p50_ms:9.2f}"
            f" {sample.p99_ms:9.2f} {sample.errors:7d}"
        )
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio full/bare: {ratio:.2f} ({verdict} target >= {TARGET_RATIO})")
    print(f"ratio full/bare with the same response headers: {header_ratio:.2f}")
    return {
        "benchmark": "http_stack",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": rounds,
        "duration_s": duration,
        "connections": CONNECTIONS,
        "samples": {name: asdict(sample) for name, sample in samples.items()},
        "ratio": round(ratio, 3),
        "ratio_same_headers": round(header_ratio, 3),
        "target_ratio": TARGET_RATIO,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (scripts/system-deps.sh does it)")
    with tempfile.TemporaryDirectory(prefix="tezgah-bench-") as temp:
        env = server_environment(Path(temp))
        subprocess.run([str(BIN / "tezgah"), "db", "upgrade"], env=env, check=True)
        targets = (FULL, BARE, BARE_HEADERS)
        rounds: dict[str, list[Sample]] = {target.name: [] for target in targets}
        for round_number in range(1, args.rounds + 1):
            for target in targets:
                rounds[target.name].append(measure(target, env, args.duration))
            summary = ", ".join(
                f"{name} {samples[-1].requests_per_second:.0f} req/s"
                for name, samples in rounds.items()
            )
            print(f"round {round_number}: {summary}", flush=True)
    medians = {name: median_sample(samples) for name, samples in rounds.items()}
    result = report(medians, args.rounds, args.duration)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"http_stack-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
