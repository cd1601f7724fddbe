"""Authenticated ``GET /api/v1/designs?limit=20`` on PostgreSQL against a bare FastAPI endpoint.

A fresh PostgreSQL database is migrated and seeded in bulk (COPY) with 10,000 designs across
personal and team workspaces: a small category tree, tags, one to three versions each (the
current one set), reviews with the designs' rating count, sum and average kept consistent, a few
designs in the trash, and private, unlisted and public designs in the benchmark user's workspaces.

tezgah (``tezgah serve``, one worker, PostgreSQL + Redis, a bearer JWT) is measured against a
baseline served side by side in the same run: a bare FastAPI app (``bare_app`` below, uvicorn, one
worker, no auth, no middleware) answering the same page in the same JSON shape from one asyncpg
query. wrk (one thread, ``--timeout 10s``) drives both at 64 and 256 connections, in alternating
rounds; medians are reported. Target: tezgah keeps at least 0.3 of the bare throughput, with no
errors and no timeouts at 256 connections. Throughput counts 2xx answers only (a quick 503 is not
throughput). Each server's CPU time per request (from /proc) is printed too: unlike requests per
second, it hardly depends on what else the machine is running.

    python -m benchmarks.design_list [--rounds 3] [--duration 10] [--profile 300]

``--profile N`` additionally runs N list requests in-process (httpx ASGITransport against
``create_app``) under cProfile with a CPU-time clock, and prints the SQL of one request and the
CPU time by package and by function.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from benchmarks.http_stack import BIN, RESULTS_DIR, UNIT_TO_MS, free_port

POSTGRES_ADMIN_DSN = os.environ.get(
    "TEZGAH_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEZGAH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
LIST_PATH = "/api/v1/designs?limit=20"
PAGE_SIZE = 20
CONNECTION_LEVELS = (64, 256)
WRK_THREADS = 1
WRK_TIMEOUT = "10s"
TARGET_RATIO = 0.3
TARGET_CONNECTIONS = 256

DESIGNS = 10_000
MAKERS = 60
TEAMS = 6
BENCH_SHARE = 0.05  # of the designs, in the benchmark user's personal workspace
EMAIL = "bench-designs@example.com"
PASSWORD = "Benchmark-Passw0rd-tezgah"  # noqa: S105 - a throwaway benchmark account

# The bare app reads these (it runs in its own uvicorn process).
BARE_DSN_ENV = "DESIGN_LIST_BARE_DSN"
BARE_USER_ENV = "DESIGN_LIST_BARE_USER_ID"


# The baseline ---------------------------------------------------------------------------------

BARE_QUERY = """
WITH page AS (
    SELECT d.id, d.workspace_id, d.slug, d.name, d.visibility, d.license, d.rating_avg,
           d.rating_count, d.current_version_id, d.remixed_from_id, d.created_at, d.updated_at
    FROM designs d
    WHERE d.deleted_at IS NULL
      AND (d.visibility = 'public'
           OR d.workspace_id IN (SELECT m.workspace_id FROM memberships m WHERE m.user_id = $1))
    ORDER BY d.created_at DESC, d.id DESC
    LIMIT $2
)
SELECT p.*,
       v.id AS version_id, v.number, v.message, v.filename, v.size, v.sha256, v.format,
       v.media_type, v.inspection_status, v.created_at AS version_created_at,
       v.thumbnail_sha256, v.author_id, u.display_name AS author_name,
       ARRAY(SELECT t.tag FROM design_tags t WHERE t.design_id = p.id ORDER BY t.tag) AS tags,
       COALESCE((
           SELECT json_agg(json_build_object('id', c.id, 'slug', c.slug, 'name', c.name_en)
                           ORDER BY c.position, c.slug)
           FROM design_categories dc JOIN categories c ON c.id = dc.category_id
           WHERE dc.design_id = p.id
       ), '[]') AS categories
FROM page p
LEFT JOIN design_versions v ON v.id = p.current_version_id
LEFT JOIN users u ON u.id = v.author_id
ORDER BY p.created_at DESC, p.id DESC
"""


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _optional(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _bare_item(row: asyncpg.Record) -> dict[str, Any]:
    version = None
    thumbnail = None
    if row["version_id"] is not None:
        author = None
        if row["author_name"] is not None:
            author = {"id": str(row["author_id"]), "display_name": row["author_name"]}
        version = {
            "id": str(row["version_id"]),
            "number": row["number"],
            "message": row["message"],
            "filename": row["filename"],
            "size": row["size"],
            "sha256": row["sha256"],
            "format": row["format"],
            "media_type": row["media_type"],
            "inspection_status": row["inspection_status"],
            "created_at": _iso(row["version_created_at"]),
            "author": author,
        }
        if row["thumbnail_sha256"] is not None:
            thumbnail = f"/api/v1/designs/{row['id']}/thumbnail?v={row['thumbnail_sha256'][:16]}"
    return {
        "id": str(row["id"]),
        "workspace_id": str(row["workspace_id"]),
        "slug": row["slug"],
        "name": row["name"],
        "visibility": row["visibility"],
        "license": row["license"],
        "tags": list(row["tags"]),
        "categories": json.loads(row["categories"]),
        "rating": {"average": round(row["rating_avg"], 2), "count": row["rating_count"]},
        "current_version": version,
        "thumbnail_url": thumbnail,
        "remixed_from_id": _optional(row["remixed_from_id"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


@asynccontextmanager
async def _bare_lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The same pool bounds as tezgah's defaults (pool_size 10 + max_overflow 10).
    app.state.pool = await asyncpg.create_pool(os.environ[BARE_DSN_ENV], min_size=10, max_size=20)
    app.state.user_id = uuid.UUID(os.environ[BARE_USER_ENV])
    try:
        yield
    finally:
        await app.state.pool.close()


bare_app = FastAPI(lifespan=_bare_lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@bare_app.get("/health")
async def bare_health() -> dict[str, str]:
    return {"status": "ok"}


@bare_app.get("/api/v1/designs")
async def bare_designs(request: Request, limit: int = PAGE_SIZE) -> JSONResponse:
    async with request.app.state.pool.acquire() as connection:
        rows = await connection.fetch(BARE_QUERY, request.app.state.user_id, limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        raw = json.dumps([_iso(last["created_at"]), str(last["id"])]).encode()
        next_cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return JSONResponse({"items": [_bare_item(row) for row in rows], "next_cursor": next_cursor})


# Seeding --------------------------------------------------------------------------------------

ADJECTIVES = (
    "Parametric", "Compact", "Modular", "Rugged", "Printable", "Slim", "Adjustable", "Sturdy",
    "Hinged", "Stackable", "Dişli", "Hafif", "Katlanır", "Ayarlı",
)  # fmt: skip
NOUNS = (
    "bracket", "enclosure", "gear", "hinge", "knob", "clamp", "spool holder", "fan duct",
    "cable clip", "mount", "gearbox", "vise jaw", "pulley", "caster", "tutucu", "kapak",
)  # fmt: skip
TAGS = (
    "pla", "petg", "abs", "tpu", "nylon", "cnc", "laser", "3d-print", "gear", "hinge",
    "enclosure", "raspberry-pi", "arduino", "esp32", "kitchen", "garden", "workshop", "camera",
    "bike", "drone", "robot", "desk", "cable", "storage", "tool", "jig", "fixture", "spare-part",
    "parametric", "openscad", "freecad", "metric", "imperial", "snap-fit", "print-in-place",
    "dişli", "mutfak", "atölye", "bahçe", "yedek-parça",
)  # fmt: skip
CATEGORY_TREE = {
    "mechanical": ("gears", "fasteners", "bearings", "linkages"),
    "electronics": ("enclosures", "mounts", "cable-management"),
    "household": ("kitchen", "bathroom", "garden"),
    "tools": ("jigs", "fixtures", "workshop"),
}
FORMATS = (  # format, media type, extension, weight
    ("stl", "model/stl", "stl", 50),
    ("fcstd", "application/x-extension-fcstd", "FCStd", 20),
    ("step", "model/step", "step", 20),
    ("obj", "model/obj", "obj", 10),
)
LICENSES = ("CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0", "MIT", None)
MATERIALS = ("PLA", "PETG", "ABS", "aluminium", "steel", "plywood")

USER_COLUMNS = (
    "id", "email", "email_key", "display_name", "language", "password_hash", "is_active",
    "is_superuser", "email_verified_at", "tokens_valid_after", "failed_login_count",
    "created_at", "updated_at",
)  # fmt: skip
WORKSPACE_COLUMNS = (
    "id", "slug", "name", "is_personal", "created_by_id", "created_at", "updated_at",
)  # fmt: skip
MEMBERSHIP_COLUMNS = ("id", "workspace_id", "user_id", "role", "created_at", "updated_at")
CATEGORY_COLUMNS = (
    "id", "parent_id", "slug", "name_en", "name_tr", "position", "created_at", "updated_at",
)  # fmt: skip
DESIGN_COLUMNS = (
    "id", "workspace_id", "slug", "name", "description", "visibility", "license",
    "material_hints", "created_by_id", "version_count", "rating_count", "rating_sum",
    "rating_avg", "search_text", "deleted_at", "created_at", "updated_at",
)  # fmt: skip
VERSION_COLUMNS = (
    "id", "design_id", "number", "message", "author_id", "filename", "size", "sha256",
    "media_type", "format", "inspection_status", "inspection", "thumbnail_sha256", "created_at",
)  # fmt: skip
REVIEW_COLUMNS = (
    "id", "design_id", "user_id", "rating", "title", "body", "report_count", "created_at",
    "updated_at",
)  # fmt: skip


@dataclass
class Seeded:
    users: int = 0
    workspaces: int = 0
    categories: int = 0
    designs: int = 0
    versions: int = 0
    tags: int = 0
    reviews: int = 0
    visible_to_bench_user: int = 0
    seconds: float = 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().encode("ascii", "ignore").decode()).strip("-")


def _hex(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _people_rows(
    rng: random.Random, now: datetime, bench_user: uuid.UUID, bench_workspace: uuid.UUID
) -> tuple[list[uuid.UUID], list[uuid.UUID], list[uuid.UUID], dict[str, list[tuple[Any, ...]]]]:
    """Makers with personal workspaces, team workspaces with members (the benchmark user in two
    of them): (makers, their personal workspaces, teams, rows by table)."""
    users, workspaces, memberships = [], [], []
    makers, personal = [], []
    for number in range(MAKERS):
        user_id, workspace_id = uuid.uuid4(), uuid.uuid4()
        joined = now - timedelta(days=rng.uniform(400, 900))
        email = f"maker{number}@example.com"
        name = f"{rng.choice(('Ayşe', 'Mehmet', 'Elif', 'Can', 'Sam', 'Alex'))} Maker {number}"
        users.append(
            (user_id, email, email, name, rng.choice(("en", "tr")), "!", True, False, joined,
             joined, 0, joined, joined)
        )  # fmt: skip
        workspaces.append(
            (workspace_id, f"maker-{number}", name, True, user_id, joined, joined)
        )  # fmt: skip
        memberships.append((uuid.uuid4(), workspace_id, user_id, "owner", joined, joined))
        makers.append(user_id)
        personal.append(workspace_id)
    teams = []
    for number in range(TEAMS):
        team_id = uuid.uuid4()
        founded = now - timedelta(days=rng.uniform(400, 900))
        owner, *members = rng.sample(makers, 6)
        workspaces.append((team_id, f"team-{number}", f"Team {number}", False, owner, founded,
                           founded))  # fmt: skip
        memberships.append((uuid.uuid4(), team_id, owner, "owner", founded, founded))
        for member in members:
            role = rng.choice(("admin", "engineer", "operator", "viewer"))
            memberships.append((uuid.uuid4(), team_id, member, role, founded, founded))
        if number < 2:
            memberships.append((uuid.uuid4(), team_id, bench_user, "engineer", founded, founded))
        teams.append(team_id)
    rows = {"users": users, "workspaces": workspaces, "memberships": memberships}
    return makers, personal, teams, rows


def _category_rows(now: datetime) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for root_position, (root, children) in enumerate(CATEGORY_TREE.items()):
        root_id = uuid.uuid4()
        title = root.replace("-", " ").title()
        rows.append((root_id, None, root, title, f"{title} (tr)", root_position, now, now))
        for position, child in enumerate(children):
            title = child.replace("-", " ").title()
            rows.append((uuid.uuid4(), root_id, child, title, f"{title} (tr)", position, now, now))
    return rows


def _design_rows(
    rng: random.Random,
    now: datetime,
    bench: tuple[uuid.UUID, uuid.UUID],
    makers: list[uuid.UUID],
    personal: list[uuid.UUID],
    teams: list[uuid.UUID],
    category_ids: list[uuid.UUID],
) -> dict[str, list[tuple[Any, ...]]]:
    bench_user, bench_workspace = bench
    owner_of = dict(zip(personal, makers, strict=True))
    designs, versions, tags, links, reviews = [], [], [], [], []
    formats = [entry[:3] for entry in FORMATS]
    format_weights = [entry[3] for entry in FORMATS]
    for number in range(DESIGNS):
        design_id = uuid.uuid4()
        draw = rng.random()
        if draw < BENCH_SHARE:
            workspace, creator = bench_workspace, bench_user
            visibility = rng.choices(("private", "unlisted", "public"), (50, 10, 40))[0]
        else:
            workspace = rng.choice(teams) if draw < 0.2 else rng.choice(personal)
            creator = owner_of.get(workspace) or rng.choice(makers)
            visibility = rng.choices(("private", "unlisted", "public"), (10, 10, 80))[0]
        created = now - timedelta(seconds=rng.uniform(3600, 730 * 86400))
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {number}"
        slug = f"{_slug(name)}-{number}"
        description = (
            f"# {name}\n\nA {rng.choice(NOUNS)} for the **{rng.choice(NOUNS)}**, "
            f"printed in {rng.choice(MATERIALS)} at 0.2 mm. Tolerances: ±0.{rng.randint(1, 4)} mm."
            "\n\n- print flat\n- no supports\n"
        )
        design_tags = rng.sample(TAGS, rng.randint(0, 5))
        tags.extend((design_id, tag) for tag in design_tags)
        links.extend(
            (design_id, category) for category in rng.sample(category_ids, rng.randint(1, 2))
        )
        version_count = rng.choices((1, 2, 3), (70, 20, 10))[0]
        moment = created
        for version_number in range(1, version_count + 1):
            file_format, media_type, extension = rng.choices(formats, format_weights)[0]
            fcstd = file_format == "fcstd"
            inspection = json.dumps({"freecad_version": "0.21", "objects": 12}) if fcstd else None
            versions.append(
                (uuid.uuid4(), design_id, version_number, f"revision {version_number}",
                 creator, f"{slug}.{extension}", rng.randint(20_000, 40_000_000), _hex(rng),
                 media_type, file_format, "ready" if fcstd else "none", inspection,
                 _hex(rng) if fcstd else None, moment)
            )  # fmt: skip
            moment += timedelta(hours=rng.uniform(1, 500))
        reviewers = rng.sample(makers, rng.choices(range(9), (15, 10, 15, 15, 15, 10, 8, 7, 5))[0])
        ratings = []
        for reviewer in reviewers:
            if reviewer == creator:
                continue
            rating = rng.choices((1, 2, 3, 4, 5), (5, 7, 15, 35, 38))[0]
            ratings.append(rating)
            reviewed = created + timedelta(hours=rng.uniform(1, 2000))
            reviews.append(
                (uuid.uuid4(), design_id, reviewer, rating, "Works", "Printed fine.", 0,
                 reviewed, reviewed)
            )  # fmt: skip
        rating_sum = sum(ratings)
        rating_avg = rating_sum / len(ratings) if ratings else 0.0
        deleted = now - timedelta(days=rng.uniform(0, 20)) if rng.random() < 0.01 else None
        materials = json.dumps(rng.sample(MATERIALS, rng.randint(0, 2)))
        search_text = "\n".join((name, description, " ".join(design_tags)))
        designs.append(
            (design_id, workspace, slug, name, description, visibility, rng.choice(LICENSES),
             materials, creator, version_count, len(ratings), rating_sum, rating_avg,
             search_text, deleted, created, moment)
        )  # fmt: skip
    return {
        "designs": designs,
        "design_versions": versions,
        "design_tags": tags,
        "design_categories": links,
        "reviews": reviews,
    }


async def seed(dsn: str, bench_user: uuid.UUID, bench_workspace: uuid.UUID) -> Seeded:
    """Bulk-load the data set with COPY; returns what was loaded."""
    started = time.perf_counter()
    rng = random.Random(20240601)  # reproducible data
    now = datetime.now(UTC)
    makers, personal, teams, rows = _people_rows(rng, now, bench_user, bench_workspace)
    rows["categories"] = _category_rows(now)
    category_ids = [row[0] for row in rows["categories"]]
    rows.update(
        _design_rows(rng, now, (bench_user, bench_workspace), makers, personal, teams, category_ids)
    )
    columns = {
        "users": USER_COLUMNS,
        "workspaces": WORKSPACE_COLUMNS,
        "memberships": MEMBERSHIP_COLUMNS,
        "categories": CATEGORY_COLUMNS,
        "designs": DESIGN_COLUMNS,
        "design_versions": VERSION_COLUMNS,
        "design_tags": ("design_id", "tag"),
        "design_categories": ("design_id", "category_id"),
        "reviews": REVIEW_COLUMNS,
    }
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            # Roots before children: the parent key refers to the same table.
            categories = sorted(rows["categories"], key=lambda row: row[1] is not None)
            rows["categories"] = categories
            for table, names in columns.items():
                await connection.copy_records_to_table(
                    table, records=rows[table], columns=list(names)
                )
            # The current version is the newest: set once both tables are loaded.
            await connection.execute(
                "UPDATE designs d SET current_version_id = v.id FROM design_versions v "
                "WHERE v.design_id = d.id AND v.number = d.version_count"
            )
        await connection.execute("ANALYZE")
        visible = await connection.fetchval(
            "SELECT count(*) FROM designs WHERE deleted_at IS NULL AND (visibility = 'public' "
            "OR workspace_id IN (SELECT workspace_id FROM memberships WHERE user_id = $1))",
            bench_user,
        )
    finally:
        await connection.close()
    return Seeded(
        users=len(rows["users"]) + 1,
        workspaces=len(rows["workspaces"]) + 1,
        categories=len(rows["categories"]),
        designs=len(rows["designs"]),
        versions=len(rows["design_versions"]),
        tags=len(rows["design_tags"]),
        reviews=len(rows["reviews"]),
        visible_to_bench_user=int(visible),
        seconds=time.perf_counter() - started,
    )


async def check_ratings(dsn: str) -> int:
    """Designs whose stored rating disagrees with their reviews (must be 0)."""
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM designs d LEFT JOIN (SELECT design_id, count(*) AS n, "
                "sum(rating) AS s FROM reviews GROUP BY design_id) r ON r.design_id = d.id "
                "WHERE d.rating_count <> COALESCE(r.n, 0) OR d.rating_sum <> COALESCE(r.s, 0) "
                "OR abs(d.rating_avg - COALESCE(r.s::float / r.n, 0)) > 1e-9"
            )
        )
    finally:
        await connection.close()


# Databases ------------------------------------------------------------------------------------


def _dsn_for(database: str) -> str:
    return POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _bench_account(dsn: str) -> tuple[uuid.UUID, uuid.UUID]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT u.id, w.id FROM users u JOIN memberships m ON m.user_id = u.id "
            "JOIN workspaces w ON w.id = m.workspace_id AND w.is_personal WHERE u.email_key = $1",
            EMAIL,
        )
    finally:
        await connection.close()
    assert row is not None, "the benchmark account was not created"
    return row[0], row[1]


async def _services_problem() -> str | None:
    """Why PostgreSQL or Redis cannot be used, or None."""
    from redis.asyncio import Redis

    try:
        await _admin("SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_DSN} is not reachable ({exc})"
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # redis raises its own ConnectionError
        return f"Redis at {REDIS_URL} is not reachable ({exc})"
    finally:
        await client.aclose()
    return None


async def _delete_redis_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# Servers and wrk ------------------------------------------------------------------------------


@dataclass
class WrkSample:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    timeouts: int
    socket_errors: int
    # Requests per second answered 2xx: fast failures must not count as throughput.
    ok_per_second: float
    # The server process's CPU time per answered request during the run (from /proc): what a
    # request costs, whatever else the machine is doing.
    server_cpu_ms: float = 0.0


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * UNIT_TO_MS[match.group(2)]


def parse_wrk(output: str) -> WrkSample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    done = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and done):
        raise ValueError(f"could not parse wrk output:\n{output}")
    socket = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    connect_read_write = sum(int(socket.group(i)) for i in (1, 2, 3)) if socket else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    requests, failed = int(done.group(1)), int(non_2xx.group(1)) if non_2xx else 0
    return WrkSample(
        requests_per_second=float(rps.group(1)),
        p50_ms=_milliseconds(p50.group(1)),
        p99_ms=_milliseconds(p99.group(1)),
        requests=requests,
        non_2xx=failed,
        timeouts=int(socket.group(4)) if socket else 0,
        socket_errors=connect_read_write,
        ok_per_second=float(rps.group(1)) * (requests - failed) / max(requests, 1),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, limit: float = 120.0) -> float:
    """Wait until the server has worked off what wrk left queued (uvicorn finishes the requests
    of connections wrk closed): under 5% of a core over half a second. Returns the wait."""
    started = time.monotonic()
    previous = cpu_seconds(pid)
    while time.monotonic() - started < limit:
        time.sleep(0.5)
        current = cpu_seconds(pid)
        if current - previous < 0.025:
            break
        previous = current
    return time.monotonic() - started


def drive(port: int, duration: int, connections: int, headers: dict[str, str]) -> WrkSample:
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s", "--latency"]
    command += ["--timeout", WRK_TIMEOUT]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{LIST_PATH}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.env["TEZGAH_VAR_DIR"]) / f"{self.name}.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        # Warnings and errors go to a file (a pipe nobody reads would block the server).
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url("/health"), timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not start")

    def wait_idle(self) -> float:
        assert self.process is not None
        return wait_idle(self.process.pid)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

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


def tezgah_environment(var_dir: Path, database_url: str, redis_prefix: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TEZGAH_")}
    env.update(
        {
            "TEZGAH_ENV": "test",
            "TEZGAH_VAR_DIR": str(var_dir),
            "TEZGAH_DATABASE_URL": database_url,
            "TEZGAH_REDIS_URL": REDIS_URL,
            "TEZGAH_REDIS_KEY_PREFIX": redis_prefix,
            "TEZGAH_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
            # The stack, not the limiter's 429 path: every limit out of reach.
            "TEZGAH_RATE_LIMIT_DEFAULT": "1000000000/minute",
            "TEZGAH_RATE_LIMIT_LOGIN_IP": "1000000/minute",
            "TEZGAH_RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
            # Below INFO the access log is not written at all.
            "TEZGAH_LOG_LEVEL": "WARNING",
            # One token for the whole run.
            "TEZGAH_ACCESS_TOKEN_TTL_SECONDS": "3600",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
    )
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def access_token(server: Server) -> str:
    response = httpx.post(
        server.url("/api/v1/auth/token"),
        data={"username": EMAIL, "password": PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def verify(tezgah: Server, bare: Server) -> int:
    """Both answer 200 with the same 20 designs in the same shape; returns the JSON size."""
    mine = httpx.get(tezgah.url(LIST_PATH), headers=tezgah.headers, timeout=30)
    if mine.status_code != 200:
        raise RuntimeError(f"tezgah answered {mine.status_code}: {mine.text[:500]}")
    items = mine.json()["items"]
    if len(items) != PAGE_SIZE:
        raise RuntimeError(f"tezgah listed {len(items)} designs, expected {PAGE_SIZE}")
    theirs = httpx.get(bare.url(LIST_PATH), timeout=30)
    theirs.raise_for_status()
    bare_items = theirs.json()["items"]
    if [item["id"] for item in items] != [item["id"] for item in bare_items]:
        raise RuntimeError("tezgah and the bare app list different designs")
    if items != bare_items:
        differing = sorted(
            {key for a, b in zip(items, bare_items, strict=True) for key in a if a[key] != b[key]}
        )
        raise RuntimeError(f"tezgah and the bare app differ in: {differing}")
    if not all(item["current_version"] for item in items):
        raise RuntimeError("a listed design has no current version")
    return len(mine.content)


# In-process profile ---------------------------------------------------------------------------


async def _profile_requests(env: dict[str, str], token: str, count: int) -> str:
    import cProfile
    import io
    import pstats

    from asgi_lifespan import LifespanManager

    from tezgah.core.config import Settings
    from tezgah.main import create_app

    values = {
        key[len("TEZGAH_") :].lower(): value
        for key, value in env.items()
        if key.startswith("TEZGAH_")
    }
    settings = Settings(**{k: v for k, v in values.items() if k in Settings.model_fields})
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {token}"}
    # The app itself, not ``manager.app``: asgi_lifespan hands every request the same state
    # dict, so ``request.state`` (where tezgah keeps the resolved principal) would leak from
    # one request to the next and authentication would be skipped.
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client,
    ):
        for _ in range(20):  # warm: statement caches, pool
            (await client.get(LIST_PATH, headers=headers)).raise_for_status()
        statements = await _statements_of_one_request(app, client, headers)
        # CPU time, not wall time: waits on PostgreSQL and Redis, and other processes on the
        # machine, do not show; what is left is what one request costs the server's core.
        profiler = cProfile.Profile(time.process_time)
        started, cpu_started = time.perf_counter(), time.process_time()
        profiler.enable()
        for _ in range(count):
            await client.get(LIST_PATH, headers=headers)
        profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    out = io.StringIO()
    out.write(f"SQL statements of one request ({len(statements)}):\n")
    for statement in statements:
        out.write("  " + " ".join(statement.split())[:160] + "\n")
    out.write(
        f"in-process, sequential, under cProfile (CPU-time clock): {count} requests in "
        f"{elapsed:.2f}s wall, {cpu:.2f}s CPU ({cpu / count * 1000:.2f} ms CPU each, client "
        "included; the profiler inflates this)\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    out.write("self CPU time by package (the client's share is httpx and asgi_lifespan):\n")
    by_package = _self_time_by_package(stats)
    total = sum(by_package.values())
    for package, seconds in sorted(by_package.items(), key=lambda item: -item[1])[:25]:
        out.write(
            f"  {package:38} {seconds / count * 1000:7.2f} ms/request {seconds / total:6.1%}\n"
        )
    # Self time only: cProfile's cumulative figures double-count suspended coroutines.
    stats.sort_stats("tottime").print_stats(40)
    return out.getvalue()


def _self_time_by_package(stats: Any) -> dict[str, float]:
    """Self (exclusive) time grouped by where the code lives: a site-packages distribution,
    a tezgah package, the standard library, or C built-ins."""
    found: dict[str, float] = {}
    for (filename, _line, function), entry in stats.stats.items():
        self_time = entry[2]
        if filename == "~":  # "<built-in method zlib.compress>", "<method 'get' of 'dict' ...>"
            if " of '" in function:
                owner = function.split(" of '", 1)[1].split("'", 1)[0]
            else:
                owner = function.strip("<>").rsplit(" ", 1)[-1].split(".", 1)[0]
            package = f"C built-in: {owner}"
        elif "site-packages/" in filename:
            package = filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        elif "/src/tezgah/" in filename:
            package = "tezgah." + filename.split("/src/tezgah/", 1)[1].split("/", 1)[0]
        else:
            package = "stdlib: " + Path(filename).parent.name + "/" + Path(filename).stem
        found[package] = found.get(package, 0.0) + self_time
    return found


async def _statements_of_one_request(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> list[str]:
    from sqlalchemy import event

    engine = app.state.resources.database.engine.sync_engine
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        (await client.get(LIST_PATH, headers=headers)).raise_for_status()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


# The run --------------------------------------------------------------------------------------


def median_sample(samples: Sequence[WrkSample]) -> WrkSample:
    """Medians of rates and latencies; counts summed."""
    return WrkSample(
        requests_per_second=statistics.median(s.requests_per_second for s in samples),
        p50_ms=statistics.median(s.p50_ms for s in samples),
        p99_ms=statistics.median(s.p99_ms for s in samples),
        requests=sum(s.requests for s in samples),
        non_2xx=sum(s.non_2xx for s in samples),
        timeouts=sum(s.timeouts for s in samples),
        socket_errors=sum(s.socket_errors for s in samples),
        ok_per_second=statistics.median(s.ok_per_second for s in samples),
        server_cpu_ms=statistics.median(s.server_cpu_ms for s in samples),
    )


def report(
    samples: dict[int, dict[str, list[WrkSample]]], rounds: int, duration: int, body_bytes: int
) -> dict[str, Any]:
    print(
        f"\nGET {LIST_PATH} ({body_bytes} bytes JSON), wrk -t{WRK_THREADS} --timeout "
        f"{WRK_TIMEOUT}, {rounds} alternating rounds of {duration}s; medians, errors summed"
    )
    print(
        f"{'conns':>5} {'server':8} {'req/s':>8} {'2xx/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'requests':>9} {'non-2xx':>8} {'timeouts':>8} {'sock err':>8} {'CPU ms/req':>10}"
    )
    summary: dict[str, Any] = {}
    verdicts = []
    for connections, by_server in samples.items():
        medians = {name: median_sample(runs) for name, runs in by_server.items()}
        for name, sample in medians.items():
            print(
                f"{connections:5d} {name:8} {sample.requests_per_second:8.0f}"
                f" {sample.ok_per_second:8.0f} {sample.p50_ms:8.1f} {sample.p99_ms:8.1f}"
                f" {sample.requests:9d} {sample.non_2xx:8d} {sample.timeouts:8d}"
                f" {sample.socket_errors:8d} {sample.server_cpu_ms:10.2f}"
            )
        tezgah, bare = medians["tezgah"], medians["bare"]
        ratio = tezgah.ok_per_second / bare.ok_per_second
        failures = tezgah.non_2xx + tezgah.timeouts + tezgah.socket_errors
        print(
            f"{connections:5d} ratio tezgah/bare: 2xx/s {ratio:.2f}, req/s "
            f"{tezgah.requests_per_second / bare.requests_per_second:.2f}, p99 "
            f"{tezgah.p99_ms / bare.p99_ms:.2f}; server CPU per request "
            f"{tezgah.server_cpu_ms / bare.server_cpu_ms:.1f}x"
        )
        if connections == TARGET_CONNECTIONS:
            verdicts.append(ratio >= TARGET_RATIO and failures == 0)
        summary[str(connections)] = {
            "tezgah": asdict(tezgah),
            "bare": asdict(bare),
            "ratio": round(ratio, 3),
            "rounds": {name: [asdict(s) for s in runs] for name, runs in by_server.items()},
        }
    verdict = "meets" if all(verdicts) else "MISSES"
    print(
        f"{verdict} target at {TARGET_CONNECTIONS} connections: ratio >= {TARGET_RATIO}, "
        "no non-2xx, no timeouts"
    )
    return summary


def run(args: argparse.Namespace, database: str, redis_prefix: str, var_dir: Path) -> int:
    dsn = _dsn_for(database)
    database_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    env = tezgah_environment(var_dir, database_url, redis_prefix)

    from tezgah.core import migrate

    started = time.perf_counter()
    migrate.upgrade(database_url)
    print(f"migrated {database} in {time.perf_counter() - started:.1f}s", flush=True)
    command = [str(BIN / "tezgah"), "users", "create", EMAIL, "--display-name", "Bench"]
    subprocess.run(
        [*command, "--password", PASSWORD], env=env, check=True, stdout=subprocess.DEVNULL
    )
    bench_user, bench_workspace = asyncio.run(_bench_account(dsn))
    seeded = asyncio.run(seed(dsn, bench_user, bench_workspace))
    print(
        f"seeded {seeded.designs} designs ({seeded.visible_to_bench_user} listed for the "
        f"benchmark user), {seeded.versions} versions, {seeded.reviews} reviews, {seeded.tags} "
        f"tags, {seeded.categories} categories, {seeded.users} users, {seeded.workspaces} "
        f"workspaces in {seeded.seconds:.1f}s",
        flush=True,
    )
    inconsistent = asyncio.run(check_ratings(dsn))
    if inconsistent:
        raise RuntimeError(f"{inconsistent} designs have ratings that disagree with reviews")

    tezgah = Server("tezgah", [], env, port=free_port())
    tezgah.command = [str(BIN / "tezgah"), "serve", "--port", str(tezgah.port), "--workers", "1"]
    bare_env = {**env, BARE_DSN_ENV: dsn, BARE_USER_ENV: str(bench_user)}
    bare = Server("bare", [], bare_env, port=free_port())
    bare.command = [
        str(BIN / "python"), "-m", "uvicorn", "benchmarks.design_list:bare_app",
        "--port", str(bare.port), "--workers", "1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    servers = (tezgah, bare)
    try:
        for server in servers:
            server.start()
        token = access_token(tezgah)
        tezgah.headers = {"Authorization": f"Bearer {token}"}
        body_bytes = verify(tezgah, bare)
        print(f"verified: both answer 200 with the same {PAGE_SIZE} designs", flush=True)
        for server in servers:  # warm: statement caches, pools, imports
            for connections in CONNECTION_LEVELS:
                drive(server.port, 2, connections, server.headers)
                server.wait_idle()
        load_before = os.getloadavg()[0]
        samples: dict[int, dict[str, list[WrkSample]]] = {
            connections: {server.name: [] for server in servers}
            for connections in CONNECTION_LEVELS
        }
        for round_number in range(1, args.rounds + 1):
            line = []
            for connections in CONNECTION_LEVELS:
                # Alternate which server goes first, so drift does not favour one.
                order = servers if round_number % 2 else tuple(reversed(servers))
                for server in order:
                    cpu = server.cpu_seconds()
                    sample = drive(server.port, args.duration, connections, server.headers)
                    cpu = server.cpu_seconds() - cpu
                    sample.server_cpu_ms = cpu * 1000 / max(sample.requests, 1)
                    drained = server.wait_idle()
                    samples[connections][server.name].append(sample)
                    line.append(
                        f"{server.name}@{connections} {sample.requests_per_second:.0f} req/s"
                        f" p99 {sample.p99_ms:.0f} ms"
                        + (f" non-2xx {sample.non_2xx}" if sample.non_2xx else "")
                        + (f" timeouts {sample.timeouts}" if sample.timeouts else "")
                        + (f" (drained {drained:.0f}s)" if drained >= 1 else "")
                    )
            print(f"round {round_number}: " + ", ".join(line), flush=True)
        load_after = os.getloadavg()[0]
        verify(tezgah, bare)  # still correct after the load
        for server in servers:
            server.stop()
        summary = report(samples, args.rounds, args.duration, body_bytes)
        print(
            f"machine: {os.cpu_count()} CPUs, 1-minute load average {load_before:.1f} before "
            f"and {load_after:.1f} after the rounds (above ~2-3, other processes took CPU)"
        )
        profile = None
        if args.profile:
            profile = asyncio.run(_profile_requests(env, token, args.profile))
            print("\n" + profile)
    finally:
        for server in servers:
            server.stop()
    result = {
        "benchmark": "design_list",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "seeded": asdict(seeded),
        "by_connections": summary,
        "target_ratio": TARGET_RATIO,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"design_list-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also profile N requests in-process"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the seeded database (for digging)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (scripts/system-deps.sh does it)")
    problem = asyncio.run(_services_problem())
    if problem:
        sys.exit(f"{problem}; start the services with ./scripts/services.sh")
    run_id = uuid.uuid4().hex[:10]
    database = f"tezgah_bench_designs_{run_id}"
    redis_prefix = f"tezgah-bench-{run_id}:"
    asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    try:
        with tempfile.TemporaryDirectory(prefix="tezgah-bench-designs-") as temp:
            return run(args, database, redis_prefix, Path(temp))
    finally:
        if args.keep_database:
            print(f"kept database {database}")
        else:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        asyncio.run(_delete_redis_prefix(redis_prefix))


if __name__ == "__main__":
    sys.exit(main())
