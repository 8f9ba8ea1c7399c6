"""Every status word ckptfetch uses, one Enum per vocabulary, and the layout names.

Members are strings (`Check.OK == "OK"`, `json.dumps` writes the value and
`f"{status}"` prints it), so records, `--json` output and messages stay what
they were. Only `enum` is imported: the fast `verify` path loads this module.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A status word: compares, prints and serialises as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Check(_Word):
    """What checking one file against its pins found (`verify` prints these, like `md5sum -c`)."""

    OK = "OK"
    FAILED = "FAILED"
    MISSING = "MISSING"
    UNLISTED = "UNLISTED"  # under DIR but listed by no manifest (verify --strict)
    FOLDER = "FOLDER"  # a folder entry not listed yet: nothing to check until its files are known


class Action(_Word):
    """What `get` plans for a selected file."""

    PRESENT = "present"  # present and correct: nothing to do
    FETCH = "fetch"
    MANUAL = "manual"  # must be put in place by hand
    FAILED = "failed"  # cannot even be planned (a folder that could not be listed)


class Outcome(_Word):
    """What happened to a file in a run (`FileOutcome.status`)."""

    PRESENT = "present"
    FETCHED = "fetched"
    FAILED = "failed"
    MANUAL = "manual"
    PLANNED = "planned"  # --dry-run: would be fetched


class Pushed(_Word):
    """What `mirror push` did with one file."""

    UPLOADED = "uploaded"
    PRESENT = "present"  # already on the mirror: nothing sent
    FAILED = "failed"


class Installed(_Word):
    """A file's state as `show` reports it."""

    INSTALLED = "installed"
    MISSING = "missing"
    CORRUPT = "corrupt"
    FOLDER = "folder"


class Layout(_Word):
    """How files are placed under the destination (a manifest's `layout:`, `get --layout`)."""

    PLAIN = "plain"  # DEST/KEY
    HF_CACHE = "hf-cache"  # as huggingface_hub's cache keeps them
    TORCH_HUB = "torch-hub"  # DEST/checkpoints/<file name>, as torch.hub keeps them


LAYOUTS = tuple(str(x) for x in Layout)


class Link(_Word):
    """How a file reaches DIR from the store (`get --link`); AUTO tries reflink, then hardlink, then copy."""

    AUTO = "auto"
    REFLINK = "reflink"  # a copy-on-write clone: no extra blocks, and DIR's file is independent
    HARDLINK = "hardlink"  # the store's own file (read-only), under a second name
    COPY = "copy"
    SYMLINK = "symlink"  # a link to the store's file (only on request)


LINKS = tuple(str(x) for x in Link)


class Origin(_Word):
    """Where a file's bytes come from (the plan's and the outcome's `origin`)."""

    NETWORK = "network"
    STORE = "store"  # the machine's content-addressed store
    HF_CACHE = "hf-cache"  # huggingface_hub's cache (HF_HUB_CACHE)
    TORCH_HUB = "torch-hub"  # torch's hub cache (TORCH_HOME)
    REUSE_FROM = "reuse-from"  # an earlier destination given with --reuse-from

SHOW_STATE = {Check.OK: Installed.INSTALLED, Check.MISSING: Installed.MISSING, Check.FAILED: Installed.CORRUPT,
              Check.FOLDER: Installed.FOLDER}
"""How a check reads in `show`."""

__all__ = ["LAYOUTS", "LINKS", "SHOW_STATE", "Action", "Check", "Installed", "Layout", "Link", "Origin", "Outcome",
           "Pushed"]
