"""Fixtures shared by the tests of ``tezgah.core``.

Keep each group of fixtures under its own heading; several test modules add groups here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import AioSession, get_session
from moto.server import ThreadedMotoServer
from redis.asyncio import Redis

from tests.conftest import REDIS_URL

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

# ---------------------------------------------------------------------------------------------
# Shared kits (cache, rate limits, events): every kit test runs on the in-process backend and on
# Redis. Redis keys live under the session's ``redis_prefix`` (deleted at session end), with a
# fresh sub-prefix per test so tests never see each other's keys.
# ---------------------------------------------------------------------------------------------

KIT_BACKENDS = ("memory", "redis")


@pytest.fixture(params=KIT_BACKENDS)
def kit_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kit_prefix(redis_prefix: str) -> str:
    """A key prefix unique to this test, under the session prefix."""
    return f"{redis_prefix}kit-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def kit_redis() -> AsyncIterator[Redis]:
    """A Redis client for this test (also used to inspect what the Redis backends wrote)."""
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------------
# S3: a real S3-compatible HTTP server (moto) on a free local port, shared by the session.
# Each test that needs a bucket gets its own, so leftovers of one test cannot hide in another.
# ---------------------------------------------------------------------------------------------

S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "testing-access-key"
S3_SECRET_ACCESS_KEY = "testing-secret-key"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    region: str = S3_REGION
    access_key_id: str = S3_ACCESS_KEY_ID
    secret_access_key: str = S3_SECRET_ACCESS_KEY
    # One botocore session for the tests' own clients: it loads the service model once.
    session: AioSession = field(default_factory=get_session, repr=False, compare=False)

    def client(self) -> ClientCreatorContext[S3Client]:
        """An aiobotocore S3 client context manager pointed at this server."""
        return self.session.create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    # One access-log line per S3 request would drown the captured logs of failing tests.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


async def create_bucket(s3_server: S3Server) -> str:
    name = f"tezgah-test-{uuid.uuid4().hex[:12]}"
    async with s3_server.client() as client:
        await client.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the session's S3 server."""
    return await create_bucket(s3_server)
