"""The exception tree and exit codes, set in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (README "Exit codes")."""

    OK = 0
    FAILED = 1  # a file is missing, corrupt, or failed to download
    USAGE = 2  # usage or manifest error
    INTERRUPTED = 130


class CkptfetchError(Exception):
    """Base of every error ckptfetch raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


Error = CkptfetchError
"""`ckptfetch.Error`: the same class, by its short name."""


class ManifestError(CkptfetchError):
    """A manifest is missing, malformed or names something impossible."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class UsageError(CkptfetchError):
    """The command line asks for something that cannot be done."""

    exit_code = ExitCode.USAGE


class DownloadError(CkptfetchError):
    """A download failed after its retries, or cannot succeed."""


class MirrorError(CkptfetchError):
    """`mirror push` cannot read or write its target (missing bucket, refused credentials, a folder not writable)."""


class HashMismatch(DownloadError):
    """The bytes received are not the bytes the manifest pins."""

    def __init__(self, target: str, source: str, algo: str, expected: str, actual: str) -> None:
        # A short expected digest is a prefix read from the file name or URL (a weak pin).
        wanted = expected if len(expected) >= len(actual) else f"a digest starting with {expected} (from the URL)"
        super().__init__(
            f"{target}: {algo} mismatch for {source}: expected {wanted}, got {actual}. "
            "The download was discarded; the file at the target path was not touched. "
            "If the upstream file changed on purpose, update the manifest."
        )
        self.target = target
        self.source = source
        self.algo = algo
        self.expected = expected
        self.actual = actual


class FetchFailed(DownloadError):
    """Several files of one fetch failed; `failures` maps each target path to its message."""

    def __init__(self, failures: dict[str, str]) -> None:
        lines = "\n".join(f"  {message}" for message in failures.values())
        super().__init__(f"{len(failures)} files failed:\n{lines}")
        self.failures = failures


class ManualFileNeeded(CkptfetchError):
    """A file that only a person can download is missing or wrong; the message says where to get and put it."""


class UnsafeArchive(CkptfetchError):
    """An archive member is a link, a device, oversized, or otherwise unsafe.

    `corrupt` is True when the archive is merely broken or truncated (worth
    downloading once more), False when it is hostile (downloading it again
    would give the same refusal).
    """

    def __init__(self, message: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class Interrupted(CkptfetchError):
    """The run was cancelled (Ctrl-C or SIGTERM); partial files are kept.

    Raise it bare (`raise Interrupted()`): the message is the one every layer shares.
    """

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str = "interrupted; partial files were kept so the next run resumes") -> None:
        super().__init__(message)
