"""Where `mirror push` writes: an S3 prefix through boto3's transfer manager, or a local or NFS folder.

Both hold the same tree (README "Clusters and air-gapped sites"):
`ROOT/sha256/<hex>` for each file, `ROOT/manifests/NAME.lock.yaml` for each
manifest pushed. An object already there with the right size (and, on S3,
the right whole-object sha256 when the store keeps one) is not sent again.

S3: objects under `SINGLE_PUT` bytes go up in one PUT that carries their
sha256 (`x-amz-checksum-sha256`): the store refuses bytes that do not match,
keeps the checksum, and `get` reads it back before downloading. Larger ones
are multipart uploads, several parts at once, as `aws s3 cp` sends them.
Credentials, endpoint and region come from boto3's standard settings.

A folder: each file is copied to a temporary name beside its final one,
fsynced and renamed, so a reader (another site's `get`, over NFS) never sees
half an object.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .errors import MirrorError, UsageError
from .lock import write
from .progress import Reporter
from .sources import s3
from .threads import parallel
from .urls import redact

SINGLE_PUT = 64 << 20  # larger objects are multipart uploads (no whole-object sha256 then)
PART_SIZE = 8 << 20  # as `aws s3 cp`


@dataclass(frozen=True)
class Upload:
    """One object to write: the verified file, its sha256 (its name) and size, and a label for progress."""

    path: Path
    sha256: str
    size: int
    label: str


class Target(Protocol):
    """A hashed mirror `mirror push` can write to."""

    shown: str

    def has(self, sha256: str, size: int) -> bool: ...
    def upload(self, files: Sequence[Upload], reporter: Reporter) -> dict[str, str]: ...
    def read(self, rel: str) -> str | None: ...
    def write(self, rel: str, text: str) -> None: ...


def open_target(root: str, jobs: int) -> Target:
    """The target `root` names (as `urls.hashed_root` normalised it); http(s) mirrors are read-only."""
    if root.startswith("s3://"):
        return S3Target(root, jobs)
    if root.startswith("file://"):
        return DirTarget(Path(url2pathname(urlsplit(root).path)), jobs)
    raise UsageError(f"cannot push to {redact(root)}: a web server is read-only here; push to s3://BUCKET/PREFIX or "
                     "a folder, and serve that")


class DirTarget:
    """A local or NFS folder."""

    def __init__(self, root: Path, jobs: int) -> None:
        self.root = root
        self.shown = str(root)
        self.jobs = jobs

    def has(self, sha256: str, size: int) -> bool:
        try:
            return (self.root / "sha256" / sha256).stat().st_size == size
        except OSError:
            return False

    def upload(self, files: Sequence[Upload], reporter: Reporter) -> dict[str, str]:
        def copy(f: Upload) -> str | None:
            reporter.start(f.label, f.size)
            try:
                self._copy(f)
            except OSError as exc:
                reporter.finish(f.label, False)
                return f"cannot write {self.root / 'sha256' / f.sha256}: {exc.strerror or exc}"
            reporter.advance(f.label, f.size)
            reporter.finish(f.label, True)
            return None

        errors = parallel(copy, files, workers=max(1, min(self.jobs, 4, len(files))))
        return {f.sha256: e for f, e in zip(files, errors, strict=True) if e is not None}

    def _copy(self, f: Upload) -> None:
        final = self.root / "sha256" / f.sha256
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{f.sha256}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(f.path, tmp)
            with open(tmp, "rb+") as out:
                os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def write(self, rel: str, text: str) -> None:
        try:
            write(self.root / rel, text)
        except OSError as exc:
            raise MirrorError(f"cannot write {self.root / rel}: {exc.strerror or exc}") from None


class S3Target:
    """An S3 (or S3-compatible) bucket and prefix."""

    def __init__(self, root: str, jobs: int) -> None:
        bucket, _, prefix = root[len("s3://"):].partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.shown = root
        self.jobs = jobs
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MirrorError(f"pushing to {root} needs boto3: {s3.EXTRA}") from None
        try:
            config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5},
                            max_pool_connections=max(10, jobs) + 10)
            self.client = boto3.session.Session().client("s3", config=config)
        except Exception as exc:  # botocore's own errors (a missing profile, a bad endpoint URL): their text is safe
            raise MirrorError(f"cannot set up S3 access for {root}: {exc}.") from None

    def _fail(self, key: str, exc: Any, doing: str) -> MirrorError:
        """One sentence for a store's refusal: what, where, and what to do (no credential in it)."""
        from botocore.exceptions import ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{key} at {redact(self.client.meta.endpoint_url)}"
        if isinstance(exc, NoCredentialsError):
            return MirrorError(f"no AWS credentials to {doing} {where}; set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or write them to ~/.aws/credentials.")
        if isinstance(exc, ClientError):
            status, code = s3.error_code(self.client, self.bucket, key, exc)
            shown = "" if code.isdigit() else f" ({code})"
            return MirrorError(f"cannot {doing} {where}: {s3.explain(status, code)}{shown}.")
        return MirrorError(f"cannot {doing} {where}: {exc}.")

    def has(self, sha256: str, size: int) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.prefix}sha256/{sha256}"
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) == 404:
                return False
            raise self._fail(key, exc, "look at") from None
        except BotoCoreError as exc:
            raise self._fail(key, exc, "look at") from None
        declared = s3.declared(head).get("sha256")
        return head.get("ContentLength") == size and declared in (None, sha256)

    def upload(self, files: Sequence[Upload], reporter: Reporter) -> dict[str, str]:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager
        from botocore.exceptions import BotoCoreError, ClientError

        config = TransferConfig(multipart_threshold=SINGLE_PUT, multipart_chunksize=PART_SIZE,
                                max_concurrency=max(10, self.jobs))
        errors: dict[str, str] = {}
        with create_transfer_manager(self.client, config) as manager:
            futures = []
            for f in files:
                extra: dict[str, str] = {"ContentType": "application/octet-stream"}
                if f.size < SINGLE_PUT:
                    extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(f.sha256)).decode()
                futures.append((f, manager.upload(str(f.path), self.bucket, f"{self.prefix}sha256/{f.sha256}",
                                                  extra_args=extra, subscribers=[_progress(reporter, f)])))
            for f, future in futures:
                try:
                    future.result()
                except (ClientError, BotoCoreError, OSError) as exc:
                    errors[f.sha256] = str(self._fail(f"{self.prefix}sha256/{f.sha256}", exc, "write"))
        return errors

    def read(self, rel: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + rel
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with body:
                return str(body.read().decode("utf-8"))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail(key, exc, "read") from None
        except BotoCoreError as exc:
            raise self._fail(key, exc, "read") from None
        except UnicodeDecodeError:
            return None

    def write(self, rel: str, text: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + rel
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"),
                                   ContentType="application/yaml")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(key, exc, "write") from None


def _progress(reporter: Reporter, f: Upload) -> Any:
    """A transfer-manager subscriber that tells `reporter` how one upload goes."""
    from s3transfer.subscribers import BaseSubscriber

    class Progress(BaseSubscriber):
        def on_queued(self, future: Any, **kwargs: Any) -> None:
            reporter.start(f.label, f.size)

        def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
            if bytes_transferred >= 0:
                reporter.advance(f.label, bytes_transferred)
            else:  # a part sent again
                reporter.rewind(f.label, -bytes_transferred)

        def on_done(self, future: Any, **kwargs: Any) -> None:
            try:
                future.result()
            except Exception:
                reporter.finish(f.label, False)
            else:
                reporter.finish(f.label, True)

    return Progress()


__all__ = ["SINGLE_PUT", "DirTarget", "S3Target", "Target", "Upload", "open_target"]
