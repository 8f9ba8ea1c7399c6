"""Upstream worlds for the bundled manifests: the real places files come from, and the real reads.

A `World` holds what an upstream project's code talks to -- Hub repos with the
files their real repos hold (tests/fakehub.py), plain URLs with their bytes,
archives with their real member names, redirects like GitHub's -- written down
from the upstream's facts, never from what a manifest assumes. `World.serve`
puts it on local servers; `run_get` runs the real `ckptfetch get` against them
(the Hub through HF_ENDPOINT, every plain host through `--mirror`).

The reads are what the upstream code does, redone without its heavy libraries:
`hub_reads` asks the real huggingface_hub, offline, for the files in the order
transformers / timm / open_clip / huggingface_hub's mixin ask for them (the
first of the candidates present); `torch_hub_file` is the path
torch.hub.load_state_dict_from_url computes.

Bytes are small synthetic blobs, so the digests the bundled manifests pin (md5
lists, sha256 prefixes in names) cannot match them: `pinned_copy` writes a copy
of a bundled manifest whose digests -- and only those -- are the synthetic
bytes' (an explicit sha256 takes the place of a weak pin carried by a name or
URL); every URL, path, layout and include list stays as bundled.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml

from .conftest import REPO, blob, cli_env, run_cli
from .fakehub import FakeHub
from .httpserver import TestServer
from .samples import mirror_path

MANIFESTS = REPO / "manifests"
DIGESTS = ("md5", "sha1", "sha256", "sha512")


def fake(name: str, size: int = 2500) -> bytes:
    """Synthetic bytes for upstream file `name` (distinct per name; 1 KiB and more is an LFS file on the fake Hub)."""
    return blob(size, seed=int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big"))


@dataclass
class HubRepo:
    files: dict[str, bytes]
    gated: bool = False
    commit: str | None = None
    pushes: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (commit, files) pushed after


@dataclass
class World:
    """What one upstream project's code downloads from, as the real hosts serve it."""

    hub: dict[str, HubRepo] = field(default_factory=dict)
    plain: dict[str, bytes] = field(default_factory=dict)  # https URL -> bytes
    redirects: dict[str, str] = field(default_factory=dict)  # https URL -> https URL it redirects to

    def repo_files(self, repo_id: str) -> dict[str, bytes]:
        """The files of a Hub repo's main: its first commit with every later push applied."""
        r = self.hub[repo_id]
        files = dict(r.files)
        for _, pushed in r.pushes:
            files.update(pushed)
        return files

    def serve(self, hub: FakeHub, server: TestServer) -> None:
        for repo_id, r in self.hub.items():
            hub.add_repo(repo_id, r.files, gated=r.gated, commit=r.commit)
            for commit, files in r.pushes:
                hub.push(repo_id, files, commit=commit)
        for url, data in self.plain.items():
            server.add(mirror_path(url), data)
        for url, to in self.redirects.items():
            # The mirror answers like the host it stands for: a redirect to the (mirrored) other host.
            server.redirect(mirror_path(url), server.url + mirror_path(to))

    def mirror_args(self, server: TestServer) -> list[str]:
        """`--mirror https://HOST/=SERVER/HOST/` for each plain host (Hub URLs keep going to HF_ENDPOINT)."""
        hosts = sorted({urlsplit(u).netloc for u in [*self.plain, *self.redirects]})
        return [a for h in hosts for a in ("--mirror", f"https://{h}/={server.url}/{h}/")]


def hub_env(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: the fake Hub, a token for gated repos, no cache or torch variables of the user."""
    env = cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_TOKEN=hub.token, **extra)
    for var in ("HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "TORCH_HOME", "CKPTFETCH_MIRRORS",
                "HTTPS_PROXY", "https_proxy"):
        if var not in extra:
            env.pop(var, None)
    return env


def run_get(manifest: Path, dest: Path, world: World, hub: FakeHub, server: TestServer, tmp_path: Path,
            *args: str) -> subprocess.CompletedProcess[str]:
    r = run_cli("get", str(manifest), "--dest", str(dest), "--no-progress", *world.mirror_args(server), *args,
                env=hub_env(hub, tmp_path), timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


# --- the manifest copy with synthetic digests ----------------------------------------------------


def pinned_copy(name: str, out: Path, contents: dict[str, bytes]) -> Path:
    """A copy of bundled manifest `name` pinned to synthetic bytes: `contents` maps a files key to its bytes.

    Only digests change: a key's md5/sha* become those of its bytes, and a key with none (a weak pin
    from its name or URL, or nothing) gets the sha256 of its bytes.
    """
    doc = yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text())
    for key, data in contents.items():
        assert key in doc["files"], f"the upstream world has {key!r}, which manifest {name!r} does not list"
        entry = doc["files"][key]
        present = [a for a in DIGESTS if a in entry] or ["sha256"]
        for algo in present:
            entry[algo] = hashlib.new(algo, data).hexdigest()
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{name}.yaml"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


def bundled(name: str) -> dict[str, object]:
    return dict(yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text()))


# --- the reads the upstream code makes ---------------------------------------------------------------


@dataclass(frozen=True)
class HubRead:
    """One read of a Hub file by upstream code: the first of `candidates` that exists (in the library's order)."""

    repo_id: str
    candidates: tuple[str, ...]
    why: str  # the upstream call, for failure messages
    optional: bool = False

    def online_choice(self, world: World) -> str | None:
        """What the library picks with the network: the first candidate the repo's main has."""
        have = world.repo_files(self.repo_id)
        return next((c for c in self.candidates if c in have), None)


def transformers_model(repo_id: str, why: str) -> list[HubRead]:
    """`from_pretrained` of a transformers model: config.json, then model.safetensors before pytorch_model.bin
    (huggingface/transformers: src/transformers/modeling_utils.py, the safetensors weights name first)."""
    return [HubRead(repo_id, ("config.json",), why), HubRead(repo_id, ("model.safetensors", "pytorch_model.bin"), why)]


def timm_pretrained(repo_id: str, why: str) -> list[HubRead]:
    """`timm.create_model(name, pretrained=True)` for a built-in name with hf_hub_id: the weights only,
    model.safetensors before pytorch_model.bin (huggingface/pytorch-image-models: timm/models/_hub.py
    load_state_dict_from_hf)."""
    return [HubRead(repo_id, ("model.safetensors", "pytorch_model.bin"), why)]


def hub_mixin(repo_id: str, why: str) -> list[HubRead]:
    """`PyTorchModelHubMixin.from_pretrained`: config.json, then model.safetensors, else pytorch_model.bin
    (huggingface_hub: hub_mixin.py, ModelHubMixin.from_pretrained and PyTorchModelHubMixin._from_pretrained)."""
    return [HubRead(repo_id, ("config.json",), why), HubRead(repo_id, ("model.safetensors", "pytorch_model.bin"), why)]


def open_clip_hf_hub(repo_id: str, why: str) -> list[HubRead]:
    """`open_clip.create_model_from_pretrained("hf-hub:REPO")`: open_clip_config.json, then
    open_clip_model.safetensors before open_clip_pytorch_model.bin (mlfoundations/open_clip:
    src/open_clip/factory.py _get_hf_config, pretrained.py download_pretrained_from_hf)."""
    return [HubRead(repo_id, ("open_clip_config.json",), why),
            HubRead(repo_id, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"), why)]


def auto_tokenizer(repo_id: str, why: str) -> list[HubRead]:
    """`AutoTokenizer.from_pretrained` of a BERT vocabulary: tokenizer_config.json and the other tokenizer
    files when the repo has them, config.json for the model type, vocab.txt always."""
    return [HubRead(repo_id, ("tokenizer_config.json",), why, optional=True),
            HubRead(repo_id, ("special_tokens_map.json",), why, optional=True),
            HubRead(repo_id, ("tokenizer.json",), why, optional=True),
            HubRead(repo_id, ("config.json",), why), HubRead(repo_id, ("vocab.txt",), why)]


_READER = """
import json, sys
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
out = []
for repo_id, candidates in json.loads(sys.argv[1]):
    got = None
    for name in candidates:
        try:
            got = [name, hf_hub_download(repo_id, name)]
            break
        except EntryNotFoundError:  # offline and not cached: LocalEntryNotFoundError, the libraries' cue to go on
            continue
    out.append(got)
print(json.dumps(out))
"""


def hub_reads(cache: Path, reads: Iterable[HubRead]) -> list[tuple[str, Path] | None]:
    """Run `reads` with the real huggingface_hub, offline, against HF_HUB_CACHE=cache, in a fresh process."""
    reads = list(reads)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / ".hf-home-readback"),
               HF_HUB_DISABLE_TELEMETRY="1")
    r = subprocess.run([sys.executable, "-c", _READER, json.dumps([[x.repo_id, list(x.candidates)] for x in reads])],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [None if g is None else (g[0], Path(g[1])) for g in json.loads(r.stdout)]


def check_hub_reads(cache: Path, world: World, reads: list[HubRead]) -> set[tuple[str, str]]:
    """Every read finds, offline, the file the library would pick online, with the world's bytes.

    Returns the (repo, file) pairs read, so a test can check nothing else was fetched.
    """
    got = hub_reads(cache, reads)
    read: set[tuple[str, str]] = set()
    for x, g in zip(reads, got, strict=True):
        want = x.online_choice(world)
        if want is None:
            assert x.optional, f"the world lacks {x.candidates} in {x.repo_id} ({x.why})"
            assert g is None
            continue
        assert g is not None, f"{x.why}: none of {x.candidates} of {x.repo_id} is in the cache offline"
        name, path = g
        assert name == want, f"{x.why}: offline it reads {name}, online the library reads {want} ({x.repo_id})"
        assert path.read_bytes() == world.repo_files(x.repo_id)[name], f"{x.why}: {x.repo_id}/{name}"
        read.add((x.repo_id, name))
    return read


def cached_files(cache: Path) -> set[tuple[str, str]]:
    """(repo id, path in repo) of every snapshot entry in a huggingface_hub cache."""
    out = set()
    for repo in cache.glob("models--*"):
        repo_id = repo.name.removeprefix("models--").replace("--", "/", 1)
        for snap in (repo / "snapshots").iterdir():
            out |= {(repo_id, p.relative_to(snap).as_posix()) for p in snap.rglob("*") if not p.is_dir()}
    return out


def torch_hub_file(hub_dir: Path, url: str) -> Path:
    """Where torch.hub.load_state_dict_from_url(url) reads the file: <hub dir>/checkpoints/<last part of the
    URL's path> (pytorch/pytorch@32e63a8:torch/hub.py; the hub dir is $TORCH_HOME/hub)."""
    return hub_dir / "checkpoints" / PurePosixPath(urlsplit(url).path).name
