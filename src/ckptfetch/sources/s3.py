"""S3 and S3-compatible object stores (SeaweedFS, MinIO, Ceph...): `s3://BUCKET/KEY`.

The source asks the store about the object with boto3 (a HEAD: size, ETag,
and a whole-object SHA-256 or SHA-1 checksum when one was stored with it) and
hands the engine a presigned GET URL, so partial files, ranges, segments,
streaming hashes and retries are the engine's. The request's `key` (the s3://
URL) keeps a partial resumable although the signature differs every run; its
`validator` (the ETag, quotes included, as the store sends it) restarts a
partial of a replaced object even where the store ignores `If-Range`.

Endpoint, region and credentials come from boto3's standard settings only
(AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE, AWS_ACCESS_KEY_ID...,
the config and credentials files, instance roles), never from a manifest.

>>> parse("s3://models/sam/vit_b.pth")
('models', 'sam/vit_b.pth')
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from typing import Any

from ..errors import DownloadError, Interrupted
from ..urls import redact
from .base import Context, Request, Resolved

EXTRA = "pip install 'ckptfetch[s3]'"
PRESIGN_SECONDS = 12 * 3600  # a presigned URL outlives any one run; a resume signs a new one
# What a store's error code means for the user, and what to do (HEAD answers carry no code: see error_code).
_HINTS = {
    "NoSuchKey": "there is no such object; check the key (and any --mirror prefix)",
    "NoSuchBucket": "the bucket does not exist there; check its name, AWS_ENDPOINT_URL and the region",
    "InvalidAccessKeyId": "the store does not know the access key in use; check AWS_ACCESS_KEY_ID, AWS_PROFILE "
                          "or the credentials file",
    "SignatureDoesNotMatch": "the secret key does not match the access key; check AWS_SECRET_ACCESS_KEY, "
                             "AWS_PROFILE or the credentials file",
    "AccessDenied": "access is denied; the credentials in use may not read this object",
    "ExpiredToken": "the credentials have expired; refresh them (e.g. `aws sso login`) and run the same command again",
    "InvalidToken": "the session token is not valid; refresh the credentials and run the same command again",
    "PermanentRedirect": "the bucket is in another region; set AWS_REGION (or the profile's region) to it",
    "AuthorizationHeaderMalformed": "the bucket is in another region; set AWS_REGION (or the profile's region) to it",
}
_BY_STATUS = {301: "PermanentRedirect", 403: "AccessDenied", 404: "NoSuchKey"}
_CHECKSUMS = (("sha256", "ChecksumSHA256", 32), ("sha1", "ChecksumSHA1", 20))

_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def parse(url: str) -> tuple[str, str] | None:
    """(bucket, key) of `s3://BUCKET/KEY`; the key is taken as written (no percent-decoding)."""
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key or key.endswith("/"):
        return None
    return bucket, key


def _client(ctx: Context) -> Any:
    """One boto3 client per process and AWS environment (clients are thread-safe; sessions are not).

    Raises ImportError without boto3.
    """
    import boto3
    from botocore.config import Config

    s = ctx.settings
    key = (os.getpid(), tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))),
           s.connect_timeout, s.read_timeout)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            # Retries are ours (the engine's policy, below); SigV4 is what every region and store accepts.
            config = Config(signature_version="s3v4", retries={"total_max_attempts": 1},
                            connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
            _CLIENTS[key] = boto3.session.Session().client("s3", config=config)
        return _CLIENTS[key]


def explain(status: int, code: str) -> str:
    """What a store's error answer means for the user, and what to do."""
    return _HINTS.get(code) or _HINTS.get(_BY_STATUS.get(status, ""), "the store refused the request")


def error_code(client: Any, bucket: str, key: str, exc: Any) -> tuple[int, str]:
    """(HTTP status, error code) of a failed HEAD; a one-byte GET tells the code a HEAD cannot carry."""
    from botocore.exceptions import BotoCoreError, ClientError

    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = str(exc.response.get("Error", {}).get("Code") or status)
    if code.isdigit() and status in (400, 403, 404):
        try:
            client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].close()
        except ClientError as again:
            code = str(again.response.get("Error", {}).get("Code") or code)
        except BotoCoreError:
            pass
    return status, code


def _head(client: Any, bucket: str, key: str, ctx: Context, what: str, url: str) -> dict[str, Any]:
    """The object's metadata; connection failures, 5xx and 429 are retried with the engine's backoff."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError, NoCredentialsError

    from ..download import retry
    from ..download.resume import is_retryable_status

    s = ctx.settings
    where = redact(client.meta.endpoint_url)
    failures = 0
    while True:
        if s.cancel.is_set():
            raise Interrupted()
        try:
            return dict(client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
        except NoCredentialsError:
            raise DownloadError(
                f"{what}: no AWS credentials to read {url}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE, or write them to ~/.aws/credentials (instance roles work too)."
            ) from None
        except ClientError as exc:
            status, code = error_code(client, bucket, key, exc)
            if not is_retryable_status(status):
                hint = explain(status, code)
                shown = "" if code.isdigit() else f" ({code})"
                raise DownloadError(f"{what}: cannot read {url} from {where}: {hint}{shown}.") from None
            problem = f"HTTP {status} ({code})"
        except (ConnectionError, HTTPClientError) as exc:
            problem = type(exc).__name__
        except BotoCoreError as exc:  # a profile that does not exist, partial credentials, a bad endpoint...
            raise DownloadError(f"{what}: cannot read {url}: {exc}.") from None
        failures += 1
        if failures > s.retries:
            raise DownloadError(
                f"{what}: cannot reach the S3 endpoint {where} for {url} after {failures} attempts ({problem}); "
                "check AWS_ENDPOINT_URL and the network, then run the same command again."
            )
        retry.pause(retry.delay(failures, None, s), s)


def declared(head: dict[str, Any]) -> dict[str, str]:
    """Whole-object checksums the store keeps (multipart ones, `...-N`, cover parts, not the file)."""
    if head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return {}
    pins = {}
    for algo, field, length in _CHECKSUMS:
        try:
            raw = base64.b64decode(head.get(field) or "", validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == length:
            pins[algo] = raw.hex()
    return pins


class S3Source:
    """Objects of S3 and S3-compatible stores, fetched through presigned URLs."""

    name = "s3"

    def matches(self, url: str) -> bool:
        return url.startswith("s3://")

    def resolve(self, url: str, ctx: Context) -> Resolved:
        shown = redact(url)
        what = ctx.label or shown
        where = parse(url)
        if where is None:
            raise DownloadError(f"{what}: {shown} does not name an object (s3://BUCKET/KEY).")
        bucket, key = where
        try:
            client = _client(ctx)
        except ImportError:
            raise DownloadError(f"{what}: {shown} is an S3 URL, which needs boto3: {EXTRA}") from None
        except Exception as exc:  # botocore's own errors (a missing profile, a bad endpoint URL): their text is safe
            raise DownloadError(f"{what}: cannot set up S3 access for {shown}: {exc}.") from None
        head = _head(client, bucket, key, ctx, what, shown)
        etag = head.get("ETag") or None
        size = head.get("ContentLength")
        signed = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
        )
        meta = {"source": "s3", "bucket": bucket, "key": key, **({"etag": etag} if etag else {})}
        return Resolved([Request(signed, key=url, validator=etag)], declared(head),
                        size if isinstance(size, int) else None, meta)
