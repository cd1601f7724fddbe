"""Identity benchmarks, each against a baseline measured side by side in the same run.

1. ``GET /api/v1/auth/me`` with a JWT through tezgah (token check, one primary-key query, the
   whole middleware stack) against the bare Starlette endpoint of ``http_stack``: wrk, 64
   connections, one uvicorn worker, alternating rounds.
2. A login storm: the p99 latency of ``/health`` while 20 clients log in over and over (Argon2 at
   the production parameters) against its p99 on the same idle server. Target: within 3x.

    python -m benchmarks.auth_stack [--rounds 3] [--duration 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.http_stack import (
    BARE,
    BIN,
    FULL,
    RESULTS_DIR,
    Sample,
    drive,
    free_port,
    median_sample,
    server_environment,
    start_server,
)

EMAIL = "bench@example.com"
PASSWORD = "Benchmark-Passw0rd-tezgah"  # noqa: S105 - a throwaway benchmark account
STORM_CLIENTS = 20
STORM_TARGET = 3.0
HEALTH_CONNECTIONS = 8


def create_account(env: dict[str, str]) -> None:
    command = [str(BIN / "tezgah"), "users", "create", EMAIL, "--password", PASSWORD]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def access_token(port: int) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/token",
        data={"username": EMAIL, "password": PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def measure_me(env: dict[str, str], duration: int) -> Sample:
    port = free_port()
    server = start_server(FULL, port, env)
    try:
        headers = {"Authorization": f"Bearer {access_token(port)}"}
        drive(port, 2, "/api/v1/auth/me", headers)
        return drive(port, duration, "/api/v1/auth/me", headers)
    finally:
        server.terminate()
        server.wait(timeout=15)


def measure_bare(env: dict[str, str], duration: int) -> Sample:
    port = free_port()
    server = start_server(BARE, port, env)
    try:
        drive(port, 2)
        return drive(port, duration)
    finally:
        server.terminate()
        server.wait(timeout=15)


async def _login_loop(port: int, stop: threading.Event, counts: list[int]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while not stop.is_set():
            response = await client.post(
                "/api/v1/auth/token", data={"username": EMAIL, "password": PASSWORD}
            )
            counts.append(response.status_code)


def _storm(port: int, stop: threading.Event, counts: list[int]) -> None:
    async def run() -> None:
        await asyncio.gather(*(_login_loop(port, stop, counts) for _ in range(STORM_CLIENTS)))

    asyncio.run(run())


def measure_storm(env: dict[str, str], duration: int) -> tuple[Sample, Sample, int, int]:
    """(idle /health, /health during the storm, logins done, logins refused)."""
    port = free_port()
    server = start_server(FULL, port, env)
    try:
        access_token(port)  # warm: first Argon2, imports
        drive(port, 2, connections=HEALTH_CONNECTIONS)
        idle = drive(port, duration, connections=HEALTH_CONNECTIONS)
        stop, counts = threading.Event(), []
        storm = threading.Thread(target=_storm, args=(port, stop, counts), daemon=True)
        storm.start()
        time.sleep(1.0)  # let every client be mid-login
        loaded = drive(port, duration, connections=HEALTH_CONNECTIONS)
        stop.set()
        storm.join(timeout=60)
        refused = sum(1 for status in counts if status != 200)
        return idle, loaded, len(counts), refused
    finally:
        server.terminate()
        server.wait(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6, help="seconds per measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (scripts/system-deps.sh does it)")
    with tempfile.TemporaryDirectory(prefix="tezgah-bench-auth-") as temp:
        env = server_environment(Path(temp))
        # Real Argon2 cost (the defaults), no login limits: the storm must actually hash.
        for name in ("LOGIN_IP", "LOGIN_ACCOUNT"):
            env[f"TEZGAH_RATE_LIMIT_{name}"] = "100000000/minute"
        subprocess.run([str(BIN / "tezgah"), "db", "upgrade"], env=env, check=True)
        create_account(env)
        me, bare, idle, loaded = [], [], [], []
        logins = refused = 0
        for round_number in range(1, args.rounds + 1):
            me.append(measure_me(env, args.duration))
            bare.append(measure_bare(env, args.duration))
            quiet, busy, done, failed = measure_storm(env, args.duration)
            idle.append(quiet)
            loaded.append(busy)
            logins, refused = logins + done, refused + failed
            print(
                f"round {round_number}: /me {me[-1].requests_per_second:.0f} req/s, bare "
                f"{bare[-1].requests_per_second:.0f} req/s; /health p99 idle "
                f"{quiet.p99_ms:.2f} ms, during {done} logins {busy.p99_ms:.2f} ms",
                flush=True,
            )
    me_m, bare_m = median_sample(me), median_sample(bare)
    ratio = me_m.requests_per_second / bare_m.requests_per_second
    storm_ratio = statistics.median(b.p99_ms / i.p99_ms for i, b in zip(idle, loaded, strict=True))
    print(
        f"\nGET /api/v1/auth/me (JWT): {me_m.requests_per_second:.0f} req/s, p50 "
        f"{me_m.p50_ms:.2f} ms, p99 {me_m.p99_ms:.2f} ms, errors {me_m.errors}"
    )
    print(
        f"bare Starlette /health:    {bare_m.requests_per_second:.0f} req/s, p50 "
        f"{bare_m.p50_ms:.2f} ms, p99 {bare_m.p99_ms:.2f} ms"
    )
    # No target: /me verifies a JWT and reads the user row, the bare endpoint does neither.
    print(f"ratio /me : bare = {ratio:.3f}")
    verdict = "meets" if storm_ratio <= STORM_TARGET else "MISSES"
    print(
        f"/health p99 during a {STORM_CLIENTS}-client login storm / idle p99 = "
        f"{storm_ratio:.2f} ({verdict} target <= {STORM_TARGET}); {logins} logins, "
        f"{refused} refused"
    )
    result = {
        "benchmark": "auth_stack",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "me": asdict(me_m),
        "bare": asdict(bare_m),
        "ratio_me_bare": round(ratio, 3),
        "health_idle": [asdict(s) for s in idle],
        "health_during_storm": [asdict(s) for s in loaded],
        "storm_p99_ratio": round(storm_ratio, 3),
        "storm_target": STORM_TARGET,
        "logins": logins,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"auth_stack-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
