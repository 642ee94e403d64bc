"""Fixtures for every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models run fastest on one thread, and the tests don't fight other work for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- S3 on loopback ------------------------------------------------------------------------------------
# moto's server speaks the S3 protocol (conditional writes included) on 127.0.0.1. One server for the
# session; every test gets a bucket of its own, so tests never see each other's objects.

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of a moto S3 server on a free loopback port (skipped, with the reason, if moto is missing)."""
    import logging
    import socket

    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed: S3 remote tests skipped")
    pytest.importorskip("s3fs", reason="s3fs is not installed: S3 remote tests skipped")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, request) -> str:
    """A new empty bucket on the moto server; returns ``s3://<bucket>``. Sets the ``AWS_*`` test credentials."""
    import re
    import uuid

    import boto3

    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


# -- PostgreSQL on loopback ----------------------------------------------------------------------------
# A throwaway cluster for the session (tests/postgres.py); every test gets a database of its own. Without
# PostgreSQL (or psycopg) here, the tests that need it are skipped with the reason, which `pytest -ra` shows.


@pytest.fixture(scope="session")
def postgres_server():
    """A running throwaway PostgreSQL server (skipped, with the reason, if none can start here)."""
    import postgres

    server = postgres.start()
    if isinstance(server, str):
        pytest.skip(server)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """URL of a new empty database on the throwaway server, e.g. ``postgresql://postgres@127.0.0.1:PORT/test_3``."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(autouse=True)
def no_database_url_from_the_environment(monkeypatch):
    """A developer's REWARDKIT_DB_URL must not send every test's `init` to their database."""
    monkeypatch.delenv("REWARDKIT_DB_URL", raising=False)
