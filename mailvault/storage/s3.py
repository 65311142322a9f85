"""A vault in an S3 bucket (AWS or any S3-compatible server), under an optional key prefix.

The endpoint, region and credentials come from boto3's own configuration
(``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws/config`` ...). Object ``name``
is stored under the key ``PREFIX/name``.

* ``put`` is a single PutObject up to 16 MiB and a multipart upload (8 MiB
  parts, aborted on failure) above; both are atomic on S3. ``exclusive=True``
  sends ``If-None-Match: *`` so the create is atomic server-side.
* Multipart uploads left by a writer killed mid-upload are aborted by :meth:`S3Backend.cleanup_temp`
  (the next writer: those over an hour old; prune, under the exclusive lock: all).
* Errors become :class:`StorageError` subclasses with one-line messages that
  name the vault location and never include credentials.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from mailvault.errors import ConfigError, ObjectExists, ObjectNotFound, StorageError, StorageFull
from mailvault.storage.base import Backend

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
#: Objects larger than this are sent as a multipart upload.
MULTIPART_THRESHOLD = 16 * MIB
#: Part size of multipart uploads (S3's minimum is 5 MiB).
PART_SIZE = 8 * MIB
#: How often a GET whose body stream broke is retried.
_BODY_ATTEMPTS = 3

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_EXISTS_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})
_FULL_CODES = frozenset({"QuotaExceeded", "InsufficientStorage", "StorageQuotaExceeded", "507"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_NETWORK_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)
_BODY_ERRORS = (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _make_client() -> S3Client:
    """An S3 client from boto3's configuration, with adaptive retries unless configured otherwise."""
    session = botocore.session.get_session()
    retries: dict[str, object] = {}
    # A Config passed here overrides the environment and config file, so only
    # supply defaults for what the user has not set (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, ...).
    if session.get_config_variable("max_attempts") is None:
        retries["max_attempts"] = 10
    if session.get_config_variable("retry_mode") in (None, "legacy"):
        retries["mode"] = "adaptive"
    config = Config(retries=retries)  # type: ignore[arg-type]
    return boto3.session.Session(botocore_session=session).client("s3", config=config)


class S3Backend(Backend):
    """Objects stored in an S3 bucket under ``prefix/``."""

    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: S3Client = client if client is not None else _make_client()

    @classmethod
    def from_url(cls, url: str) -> S3Backend:
        """Backend for ``s3://bucket[/prefix]``; raises ConfigError for a malformed URL."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad S3 URL {url!r}: {exc}") from None
        if parts.scheme != "s3":
            raise ConfigError(f"bad S3 URL {url!r}: expected s3://bucket/prefix")
        bucket = parts.netloc
        if not bucket or not _BUCKET_RE.match(bucket) or port is not None or "@" in bucket:
            raise ConfigError(f"bad S3 URL {url!r}: invalid bucket name {bucket!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"bad S3 URL {url!r}: unexpected query or fragment")
        prefix = parts.path.strip("/")
        if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
            raise ConfigError(f"bad S3 URL {url!r}: invalid prefix {prefix!r}")
        return cls(bucket, prefix)

    # -- helpers ---------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _check_name(self, name: str) -> str:
        if not name or any(p in ("", ".", "..") for p in name.split("/")):
            raise StorageError(f"{self.location}: invalid object name {name!r}")
        return self._key(name)

    def _raise(self, exc: Exception, action: str, name: str | None = None) -> NoReturn:
        """Raise the StorageError subclass matching a boto3/botocore exception."""
        what = f"{action} {name}" if name else action
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            message = _one_line(err.get("Message", "")) or code or status
            if code == "NoSuchBucket":
                raise StorageError(f"{self.location}: bucket {self.bucket} does not exist") from exc
            if code in _NOT_FOUND_CODES or (status == "404" and not code):
                raise ObjectNotFound(f"{self.location}: no object {name}") from exc
            if code in _EXISTS_CODES or status == "412":
                raise ObjectExists(f"{self.location}: object {name} already exists") from exc
            if code in _FULL_CODES or status == "507":
                raise StorageFull(f"{self.location}: storage full {what}: {message}") from exc
            if code in _DENIED_CODES:
                raise StorageError(f"{self.location}: access denied {what} ({code}): {message}") from exc
            raise StorageError(f"{self.location}: {what} failed: {code or status}: {message}") from exc
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise StorageError(
                f"{self.location}: no usable AWS credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from exc
        if isinstance(exc, _NETWORK_ERRORS):
            endpoint = self._client.meta.endpoint_url
            raise StorageError(
                f"{self.location}: cannot reach S3 endpoint {endpoint} ({type(exc).__name__}) {what}"
            ) from exc
        raise StorageError(f"{self.location}: {what} failed: {_one_line(exc)}") from exc

    # -- Backend ---------------------------------------------------------

    def put(
        self, name: str, data: bytes | bytearray, *, exclusive: bool = False, durable: bool = True
    ) -> None:
        key = self._check_name(name)
        try:
            if len(data) > MULTIPART_THRESHOLD:
                self._put_multipart(key, data, exclusive)
            elif exclusive:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), IfNoneMatch="*")
            else:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "writing", name)

    def _put_multipart(self, key: str, data: bytes | bytearray, exclusive: bool) -> None:
        # Mirror s3transfer: with default (when_supported) checksums, declare CRC32
        # up front so each part's checksum is checked and recorded in the object.
        config = self._client.meta.config
        checksum = getattr(config, "request_checksum_calculation", "when_supported") != "when_required"
        if checksum:
            upload = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32"
            )
        else:
            upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            view = memoryview(data)
            for number, start in enumerate(range(0, len(data), PART_SIZE), start=1):
                body = bytes(view[start : start + PART_SIZE])
                if checksum:
                    resp = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=body,
                        ChecksumAlgorithm="CRC32",
                    )
                    parts.append({"ETag": resp["ETag"], "PartNumber": number})
                    if resp.get("ChecksumCRC32"):
                        parts[-1]["ChecksumCRC32"] = resp["ChecksumCRC32"]
                else:
                    resp = self._client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                    )
                    parts.append({"ETag": resp["ETag"], "PartNumber": number})
            if exclusive:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            else:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            # The original error matters; a lifecycle rule can reap an upload whose abort failed.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"bad range offset={offset} length={length}")
        key = self._check_name(name)
        if length == 0:
            self.size(name)  # raises ObjectNotFound when missing
            return b""
        if length is not None:
            byte_range: str | None = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            byte_range = f"bytes={offset}-"
        else:
            byte_range = None
        for attempt in range(1, _BODY_ATTEMPTS + 1):
            try:
                if byte_range is None:
                    resp = self._client.get_object(Bucket=self.bucket, Key=key)
                else:
                    resp = self._client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # offset at or past the end (416)
                self._raise(exc, "reading", name)
            except BotoCoreError as exc:
                self._raise(exc, "reading", name)
            # StreamingBody.read() itself (not the raw urllib3 stream a ``with`` block hands out):
            # it turns a connection broken mid-body into ResponseStreamingError and a short body
            # into IncompleteReadError, both retried here.
            body = resp["Body"]
            try:
                return body.read()
            except _BODY_ERRORS as exc:
                # botocore does not retry a body stream that breaks midway.
                if attempt == _BODY_ATTEMPTS:
                    self._raise(exc, "reading", name)
            except BotoCoreError as exc:
                self._raise(exc, "reading", name)
            finally:
                body.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for obj in page.get("Contents", []):
                    key = obj.get("Key", "")
                    if key.startswith(base) and len(key) > len(base):
                        yield key[len(base) :], obj.get("Size", 0)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "listing", prefix or None)

    def delete(self, name: str) -> None:
        key = self._check_name(name)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND_CODES:
                self._raise(exc, "deleting", name)
        except BotoCoreError as exc:
            self._raise(exc, "deleting", name)

    def _head(self, name: str) -> int | None:
        """Size of ``name``, or None when it does not exist."""
        key = self._check_name(name)
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if err.get("Code") in _NOT_FOUND_CODES or status == 404:
                return None
            self._raise(exc, "reading", name)
        except BotoCoreError as exc:
            self._raise(exc, "reading", name)

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def size(self, name: str) -> int:
        n = self._head(name)
        if n is None:
            raise ObjectNotFound(f"{self.location}: no object {name}")
        return n

    def cleanup_temp(self, older_than_seconds: float = 3600.0) -> int:
        """Abort multipart uploads under the prefix started over ``older_than_seconds`` ago (left by
        writers killed mid-upload: they cost storage until aborted); return how many."""
        base = f"{self.prefix}/" if self.prefix else ""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        aborted = 0
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload.get("Key", ""), upload.get("UploadId", "")
                    started = upload.get("Initiated")
                    if not key.startswith(base) or (started is not None and started > cutoff):
                        continue
                    with contextlib.suppress(ClientError):  # already completed or aborted
                        self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                        aborted += 1
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "cleaning up multipart uploads")
        return aborted

    def close(self) -> None:
        self._client.close()
