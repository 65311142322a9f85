"""Storage fixtures: a moto S3 server, fresh buckets, and backends parametrised over local and S3.

Test modules use ``backend`` (a fresh :class:`Backend`) or ``vault_location`` (a
location string for :func:`open_backend`) to run the same test on both backends;
the S3 variants carry the ``s3`` mark.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailvault.storage.base import Backend

BACKEND_PARAMS = ["local", pytest.param("s3", marks=pytest.mark.s3)]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (free port); boto3 is pointed at it through the environment."""
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    no_file = str(tmp_path_factory.mktemp("aws") / "none")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", url)
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            # Keep the developer's own AWS setup out of the tests.
            mp.setenv("AWS_CONFIG_FILE", no_file)
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", no_file)
            mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
            for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
                mp.delenv(var, raising=False)
            yield url
    finally:
        server.stop()


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


@pytest.fixture
def s3_vault_url(moto_server: str) -> Iterator[str]:
    """``s3://<fresh bucket>/vault``; the bucket is emptied and removed afterwards."""
    client = _s3_client()
    bucket = f"mv-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/vault"
    try:
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)
    except Exception:  # the test may have broken the environment on purpose
        pass
    finally:
        client.close()


@pytest.fixture(params=BACKEND_PARAMS)
def vault_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A location string for a not-yet-existing vault: a directory path or an s3:// URL."""
    if request.param == "s3":
        url: str = request.getfixturevalue("s3_vault_url")
        return url
    return str(tmp_path / "vault")


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty Backend: LocalBackend on tmp_path or S3Backend on a fresh bucket."""
    if request.param == "s3":
        from mailvault.storage.s3 import S3Backend

        b: Backend = S3Backend.from_url(request.getfixturevalue("s3_vault_url"))
    else:
        from mailvault.storage.local import LocalBackend

        b = LocalBackend(tmp_path / "vault")
    try:
        yield b
    finally:
        b.close()
