"""The bundled manifests against their upstream projects: every file lands where the upstream code reads it.

Each test builds the upstream's real world (tests/upstream.py): Hub repos with the files the real
repos hold, plain URLs, archives with their real member names and GitHub-like redirects, all written
down from the upstream code and docs cited beside them -- never from the manifest under test. It then
runs the real `ckptfetch get` on a copy of the bundled manifest whose digests alone are synthetic
(`pinned_copy`), and reads the files back the way the upstream code does: the real huggingface_hub
offline for Hub files, the path torch.hub computes for torch hub files, the project's own paths for
the rest. Nothing the code does not read may be fetched.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ckptfetch.manifest import load_manifest

from .conftest import blob, cli_env, run_cli, sha256
from .fakehosts import FakeHosts
from .fakehub import FakeHub
from .httpserver import TestServer
from .upstream import (
    MANIFESTS,
    HubRead,
    HubRepo,
    World,
    auto_tokenizer,
    bundled,
    cached_files,
    check_hub_reads,
    fake,
    hub_mixin,
    open_clip_hf_hub,
    pinned_copy,
    run_get,
    timm_pretrained,
    torch_hub_file,
    transformers_model,
)

BUNDLED = ["sam-pt", "sam-3d-objects", "rtmpose3d", "medical-backbones", "3dfeatprobe"]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub(page_size=3) as h:
        yield h


def files_under(dest: Path) -> set[str]:
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*")
            if not p.is_dir() and ".ckptfetch" not in p.relative_to(dest).parts}


# --- every manifest loads -------------------------------------------------------------------------


def test_every_bundled_manifest_is_listed_without_error() -> None:
    r = run_cli("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["manifests"]}
    assert set(BUNDLED) <= set(rows)
    for name in BUNDLED:
        assert "error" not in rows[name], rows[name]
    assert {p.stem for p in MANIFESTS.glob("*.yaml")} == set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_show_every_bundled_manifest(name: str, tmp_path: Path) -> None:
    r = run_cli("show", name, "--dest", str(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("show", name, "--json", "--dest", str(tmp_path)).stdout)
    m = load_manifest(MANIFESTS / f"{name}.yaml")
    assert [f["path"] for f in doc["files"]] == list(m.files)
    # Folder entries are listed from the Hub only when fetched; every other file is missing from an empty DEST.
    assert all(f["state"] == ("folder" if f["folder"] else "missing") for f in doc["files"])


# --- sam-pt: SysCV/sam-pt@874ff7e ------------------------------------------------------------------

# Where SAM-PT's Hydra configs read each checkpoint: "${hydra:runtime.cwd}/models/<path>" (run from the
# checkout's root, so DEST = models/). The PIPS trackers get a folder (see SAM_PT_STEP_FOLDERS).
SAM_PT_CONFIG_READS = {
    "configs/model/point_tracker/cotracker.yaml": "cotracker_ckpts/cotracker_stride_4_wind_8.pth",
    "configs/model/point_tracker/raft.yaml": "raft_ckpts/raft-things.pth",
    "configs/model/point_tracker/superglue.yaml (superpoint)": "superglue_ckpts/superpoint_v1.pth",
    "configs/model/point_tracker/superglue.yaml (superglue)": "superglue_ckpts/superglue_outdoor.pth",
    "configs/model/point_tracker/tapir.yaml": "tapir_ckpts/open_source_ckpt/tapir_checkpoint_panning.npy",
    "configs/model/point_tracker/tapnet.yaml": "tapnet_ckpts/open_source_ckpt/checkpoint_wo_optstate.npy",
    "configs/model/sam/sam_vit_base.yaml": "sam_ckpts/sam_vit_b_01ec64.pth",
    "configs/model/sam/sam_vit_large.yaml": "sam_ckpts/sam_vit_l_0b3195.pth",
    "configs/model/sam/sam_vit_huge.yaml": "sam_ckpts/sam_vit_h_4b8939.pth",
    "configs/model/sam/sam_mobile_vit_tiny.yaml": "sam_mobile_ckpts/sam_mobile_vit_t.pth",
    "configs/model/sam/samhq_vit_huge.yaml": "samhq_ckpts/sam_hq_vit_h.pth",
    "configs/model/sam/samhq_light_vit_tiny.yaml": "samhq_ckpts/sam_hq_vit_t.pth",
}
# configs/model/point_tracker/pips*.yaml name a folder; sam_pt/point_tracker/utils/saverloader.py:load lists it,
# reads every name as "model-<step>.pth" and loads the highest step.
SAM_PT_STEP_FOLDERS = {"pips_ckpts/reference_model": "model-000200000.pth",
                       "pips_plus_plus_ckpts/reference_model": "model-000200000.pth"}
# docs/03-prepare-checkpoints.md: the md5 list of the complete set ("find models -type f"), minus "models/".
SAM_PT_COMPLETE = [
    "cotracker_ckpts/cotracker_stride_4_wind_12.pth", "cotracker_ckpts/cotracker_stride_4_wind_8.pth",
    "cotracker_ckpts/cotracker_stride_8_wind_16.pth", "pips_ckpts/reference_model/model-000200000.pth",
    "pips_plus_plus_ckpts/reference_model/model-000200000.pth", "raft_ckpts/raft-chairs.pth",
    "raft_ckpts/raft-kitti.pth", "raft_ckpts/raft-sintel.pth", "raft_ckpts/raft-small.pth",
    "raft_ckpts/raft-things.pth", "sam_ckpts/sam_vit_b_01ec64.pth", "sam_ckpts/sam_vit_h_4b8939.pth",
    "sam_ckpts/sam_vit_l_0b3195.pth", "sam_mobile_ckpts/sam_mobile_vit_t.pth", "samhq_ckpts/sam_hq_vit_b.pth",
    "samhq_ckpts/sam_hq_vit_h.pth", "samhq_ckpts/sam_hq_vit_l.pth", "samhq_ckpts/sam_hq_vit_t.pth",
    "superglue_ckpts/superglue_indoor.pth", "superglue_ckpts/superglue_outdoor.pth",
    "superglue_ckpts/superpoint_v1.pth", "tapir_ckpts/open_source_ckpt/causal_tapir_checkpoint.npy",
    "tapir_ckpts/open_source_ckpt/tapir_checkpoint_panning.npy", "tapnet_ckpts/open_source_ckpt/checkpoint.npy",
    "tapnet_ckpts/open_source_ckpt/checkpoint_wo_optstate.npy",
]
HQ_SAM_COMMITS = ("67ab82412bc794d5ce2e9799b8b6a3c0a8cfe1d2", "a3a77cd0a2e5e50eaa76faccf61b964732d9b35f")


def tar_gz(members: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for d in folders:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def sam_pt_world() -> tuple[World, dict[str, bytes]]:
    """SAM-PT's sources as docs/03-prepare-checkpoints.md fetches them, with their hosts' real behaviour."""
    c = {path: fake(f"sam-pt:{path}", 3000) for path in SAM_PT_COMPLETE}
    w = World()
    fb = "https://dl.fbaipublicfiles.com"
    for n in ("4_wind_12", "4_wind_8", "8_wind_16"):
        w.plain[f"{fb}/cotracker/cotracker_stride_{n}.pth"] = c[f"cotracker_ckpts/cotracker_stride_{n}.pth"]
    for n in ("b_01ec64", "h_4b8939", "l_0b3195"):
        w.plain[f"{fb}/segment_anything/sam_vit_{n}.pth"] = c[f"sam_ckpts/sam_vit_{n}.pth"]
    # aharley/pips and aharley/pips2 get_reference_model.sh: `tar -xvf reference_model.tar.gz` gives reference_model/.
    w.plain["https://www.dropbox.com/s/glk6jmoa9yeervl/reference_model.tar.gz"] = tar_gz(
        {"reference_model/model-000200000.pth": c["pips_ckpts/reference_model/model-000200000.pth"]},
        ("reference_model/",))
    w.plain["https://www.dropbox.com/scl/fi/czdlt2zc2ji2b7zd0pvoe/reference_model.tar.gz?rlkey=56ebq4g5dk01kyq8kuismev14"] = \
        tar_gz({"reference_model/model-000200000.pth": c["pips_plus_plus_ckpts/reference_model/model-000200000.pth"]},
               ("reference_model/",))
    # princeton-vl/RAFT models.zip: models/raft-*.pth (the doc unzips with -j, flattening them).
    w.plain["https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip"] = zip_of(
        {f"models/raft-{n}.pth": c[f"raft_ckpts/raft-{n}.pth"] for n in ("chairs", "kitti", "sintel", "small", "things")})
    # github.com/O/R/raw/REF/PATH answers with a redirect to raw.githubusercontent.com/O/R/REF/PATH.
    raw = {
        "ChaoningZhang/MobileSAM/01ea8d0f5590082f0c1ceb0a3e2272593f20154b/weights/mobile_sam.pt":
            c["sam_mobile_ckpts/sam_mobile_vit_t.pth"],
        **{f"magicleap/SuperGluePretrainedNetwork/ddcf11f42e7e0732a0c4607648f9448ea8d73590/models/weights/{n}.pth":
           c[f"superglue_ckpts/{n}.pth"] for n in ("superglue_indoor", "superglue_outdoor", "superpoint_v1")},
    }
    for path, data in raw.items():
        owner, repo, rest = path.split("/", 2)
        w.plain[f"https://raw.githubusercontent.com/{path}"] = data
        w.redirects[f"https://github.com/{owner}/{repo}/raw/{rest}"] = f"https://raw.githubusercontent.com/{path}"
    for n in ("causal_tapir_checkpoint", "tapir_checkpoint_panning"):
        w.plain[f"https://storage.googleapis.com/dm-tapnet/{n}.npy"] = c[f"tapir_ckpts/open_source_ckpt/{n}.npy"]
    w.plain["https://storage.googleapis.com/dm-tapnet/checkpoint.npy"] = c["tapnet_ckpts/open_source_ckpt/checkpoint.npy"]
    w.plain["https://drive.google.com/file/d/1fGhoW33k87OQQHUTmFobMUjEnRixhuqg/view?usp=sharing"] = \
        c["tapnet_ckpts/open_source_ckpt/checkpoint_wo_optstate.npy"]
    # lkeab/hq-sam on the Hub: B/H/L at the first commit, the tiny (Light HQ-SAM) one added at the second.
    w.hub["lkeab/hq-sam"] = HubRepo(
        {f"sam_hq_vit_{s}.pth": c[f"samhq_ckpts/sam_hq_vit_{s}.pth"] for s in "bhl"} | {"README.md": b"# HQ-SAM\n"},
        commit=HQ_SAM_COMMITS[0], pushes=[(HQ_SAM_COMMITS[1], {"sam_hq_vit_tiny.pth": c["samhq_ckpts/sam_hq_vit_t.pth"]})])
    return w, c


def test_sam_pt_every_checkpoint_where_its_configs_read_it(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    world, contents = sam_pt_world()
    world.serve(hub, server)
    manifest = pinned_copy("sam-pt", tmp_path / "manifests", contents)
    dest = tmp_path / "checkout" / "models"
    r = run_get(manifest, dest, world, hub, server, tmp_path, "--minimal")
    assert r.returncode == 0, r.stderr
    # configs/model/sam_pt.yaml's defaults: cotracker and samhq_vit_huge.
    assert files_under(dest) == {SAM_PT_CONFIG_READS["configs/model/point_tracker/cotracker.yaml"],
                                 SAM_PT_CONFIG_READS["configs/model/sam/samhq_vit_huge.yaml"]}
    r = run_get(manifest, dest, world, hub, server, tmp_path)
    assert r.returncode == 0, r.stderr
    for config, path in SAM_PT_CONFIG_READS.items():
        assert (dest / path).read_bytes() == contents[path], config
    for folder, name in SAM_PT_STEP_FOLDERS.items():
        names = os.listdir(dest / folder)
        assert names == [name], "saverloader.load parses every name in the folder as model-<step>.pth"
        assert max(int(n.split("-")[1].split(".")[0]) for n in names) == 200000
    assert files_under(dest) == set(SAM_PT_COMPLETE), "the doc's complete set, nothing else"
    for path in SAM_PT_COMPLETE:
        assert (dest / path).read_bytes() == contents[path], path
    assert run_cli("verify", str(dest)).returncode == 0


# --- sam-3d-objects: facebookresearch/sam-3d-objects@cf06676 ---------------------------------------

# The gated Hub repo facebook/sam-3d-objects keeps the pipeline under checkpoints/ (doc/setup.md downloads the
# repo and moves checkpoints/ to checkpoints/hf/). Its files, as public inventories of the repo list them.
SAM3D_HUB_FILES = [
    "pipeline.yaml", "ss_generator.yaml", "ss_generator.ckpt", "slat_generator.yaml", "slat_generator.ckpt",
    "ss_decoder.yaml", "ss_decoder.ckpt", "ss_encoder.yaml", "ss_encoder.ckpt", "ss_encoder.safetensors",
    "slat_decoder_gs.yaml", "slat_decoder_gs.ckpt", "slat_decoder_gs_4.yaml", "slat_decoder_gs_4.ckpt",
    "slat_decoder_mesh.yaml", "slat_decoder_mesh.ckpt", "slat_decoder_mesh.pt", "slat_encoder.yaml", "slat_encoder.ckpt",
]
# The Hub's pipeline.yaml (its *_path keys, relative to the folder holding it), and its MoGe depth model.
SAM3D_PIPELINE = {
    "_target_": "sam3d_objects.pipeline.inference_pipeline_pointmap.InferencePipelinePointMap",
    **{f"{m}_{kind}_path": f"{m}.{'yaml' if kind == 'config' else 'ckpt'}"
       for m in ("ss_generator", "slat_generator", "ss_decoder", "slat_decoder_gs", "slat_decoder_gs_4",
                 "slat_decoder_mesh") for kind in ("config", "ckpt")},
    "depth_model": {"_target_": "sam3d_objects.pipeline.depth_models.moge.MoGe",
                    "model": {"_target_": "moge.model.v1.MoGeModel.from_pretrained",
                              "pretrained_model_name_or_path": "Ruicheng/moge-vitl"}},
}
DINOV2_L_REG4 = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth"
# torch.hub.load("facebookresearch/dinov2", ...) offline uses <hub dir>/facebookresearch_dinov2_main/ (torch/hub.py
# _parse_repo_info + _get_cache_or_reload) and imports its hubconf.py, which imports the dinov2 package.
DINOV2_COMMIT = "b8931f7bf91576930313be2c6d6af376033b35f0"
DINOV2_SOURCE = ["hubconf.py", "dinov2/__init__.py", "dinov2/hub/__init__.py", "dinov2/hub/backbones.py",
                 "dinov2/hub/utils.py", "dinov2/models/__init__.py", "dinov2/models/vision_transformer.py"]


def sam3d_world() -> World:
    w = World()
    files = {f"checkpoints/{n}": fake(f"sam3d:{n}", 1500 if n.endswith(".yaml") else 4000) for n in SAM3D_HUB_FILES}
    files["checkpoints/pipeline.yaml"] = yaml.safe_dump(SAM3D_PIPELINE, sort_keys=False).encode()
    files |= {"README.md": b"# SAM 3D Objects\n", ".gitattributes": b"*.ckpt filter=lfs\n", "doc/arch.png": fake("sam3d:arch")}
    w.hub["facebook/sam-3d-objects"] = HubRepo(files, gated=True)
    # MoGe (microsoft/MoGe@a8c3734:moge/model/v1.py): hf_hub_download(repo_id, repo_type="model", filename="model.pt").
    w.hub["Ruicheng/moge-vitl"] = HubRepo({"model.pt": fake("moge:model.pt"), "README.md": b"# MoGe\n"})
    w.plain[DINOV2_L_REG4] = fake("dinov2_vitl14_reg4_pretrain.pth")
    # GitHub's source archive of a commit: one top folder, dinov2-<commit>/; github.com sends it from codeload.
    archive = f"https://github.com/facebookresearch/dinov2/archive/{DINOV2_COMMIT}.zip"
    w.redirects[archive] = f"https://codeload.github.com/facebookresearch/dinov2/zip/{DINOV2_COMMIT}"
    w.plain[w.redirects[archive]] = zip_of({f"dinov2-{DINOV2_COMMIT}/{p}": f"# {p}\n".encode() for p in DINOV2_SOURCE})
    return w


def sam3d_fetch(hub: FakeHub, server: TestServer, tmp_path: Path) -> tuple[World, Path, Path]:
    world = sam3d_world()
    world.serve(hub, server)
    manifest = pinned_copy("sam-3d-objects", tmp_path / "manifests", {})
    checkout = tmp_path / "sam-3d-objects"
    r = run_get(manifest, checkout / "checkpoints", world, hub, server, tmp_path)
    assert r.returncode == 0, r.stderr
    return world, checkout, checkout / "checkpoints"


def test_sam_3d_objects_pipeline_moge_and_dinov2_where_the_code_reads_them(hub: FakeHub, server: TestServer,
                                                                          tmp_path: Path) -> None:
    world, checkout, dest = sam3d_fetch(hub, server, tmp_path)
    repo = world.hub["facebook/sam-3d-objects"].files
    # demo.py: Inference("checkpoints/hf/pipeline.yaml"); notebook/inference.py sets workspace_dir to its folder
    # and sam3d_objects/pipeline/inference_pipeline.py joins every *_path to it.
    config = checkout / "checkpoints/hf/pipeline.yaml"
    pipeline = yaml.safe_load(config.read_text())
    read = {v for k, v in pipeline.items() if k.endswith("_path")}
    assert len(read) == 12
    for name in read:
        assert (config.parent / name).read_bytes() == repo[f"checkpoints/{name}"], name
    assert {p.name for p in config.parent.iterdir()} == read | {"pipeline.yaml"}, "nothing the pipeline never loads"
    # MoGe, from pipeline.yaml's depth model, with HF_HUB_CACHE=checkpoints.
    moge = pipeline["depth_model"]["model"]["pretrained_model_name_or_path"]
    check_hub_reads(dest, world, [HubRead(moge, ("model.pt",), "MoGeModel.from_pretrained")])
    assert cached_files(dest) == {(moge, "model.pt")}
    # DINOv2 ViT-L/14 reg4, with TORCH_HOME=checkpoints (torch hub's dir is $TORCH_HOME/hub).
    assert torch_hub_file(dest / "hub", DINOV2_L_REG4).read_bytes() == world.plain[DINOV2_L_REG4]
    assert run_cli("verify", str(dest), "--strict").returncode == 0


def test_sam_3d_objects_dinov2_source_tree_for_torch_hub_offline(hub: FakeHub, server: TestServer,
                                                                 tmp_path: Path) -> None:
    _, _, dest = sam3d_fetch(hub, server, tmp_path)
    tree = dest / "hub" / "facebookresearch_dinov2_main"
    for path in DINOV2_SOURCE:
        assert (tree / path).is_file(), path


# --- rtmpose3d: mutedeparture/rtmpose3d@386e8c8 -------------------------------------------------------

# rtmpose3d/configs/__init__.py: the checkpoint URLs.
RTMPOSE3D_URLS = [f"https://huggingface.co/rbarac/rtmpose3d/resolve/main/{n}" for n in (
    "rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth",
    "rtmw3d-l_8xb64_cocktail14-384x288-794dbc78_20240626.pth",
    "rtmw3d-x_8xb64_cocktail14-384x288-b0a0eab7_20240626.pth",
)]


def rtmpose3d_cached(cache_dir: Path, url: str) -> Path:
    """rtmpose3d/weights/downloader.py get_checkpoint_path: <cache_dir>/<last part of the URL>."""
    return cache_dir / url.split("/")[-1]


def test_rtmpose3d_fills_the_librarys_cache(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    world = World()
    names = [u.split("/")[-1] for u in RTMPOSE3D_URLS]
    world.hub["rbarac/rtmpose3d"] = HubRepo({n: fake(n) for n in names} | {"README.md": b"# RTMPose3D\n"})
    world.serve(hub, server)
    manifest = pinned_copy("rtmpose3d", tmp_path / "manifests", {n: world.hub["rbarac/rtmpose3d"].files[n] for n in names})
    # CACHE_DIR = Path.home() / '.cache' / 'rtmpose3d' / 'checkpoints', used when cache_dir is None.
    cache_dir = tmp_path / "home" / ".cache" / "rtmpose3d" / "checkpoints"
    r = run_get(manifest, cache_dir, world, hub, server, tmp_path, "--minimal")
    assert r.returncode == 0, r.stderr
    # RTMPose3DInference's defaults: the detector and model_size 'l'.
    assert files_under(cache_dir) == set(names[:2])
    r = run_get(manifest, cache_dir, world, hub, server, tmp_path)
    assert r.returncode == 0, r.stderr
    for url in RTMPOSE3D_URLS:
        assert rtmpose3d_cached(cache_dir, url).read_bytes() == world.hub["rbarac/rtmpose3d"].files[url.split("/")[-1]]
    assert files_under(cache_dir) == set(names)
    # The default destination is what the library reads with cache_dir="checkpoints".
    m = load_manifest(MANIFESTS / "rtmpose3d.yaml")
    assert all(rtmpose3d_cached(Path(m.root), u).as_posix() == f"{m.root}/{u.split('/')[-1]}" for u in RTMPOSE3D_URLS)
    assert set(m.files) == set(names)


def test_rtmpose3d_file_name_pins_reject_other_bytes(hub: FakeHub, tmp_path: Path) -> None:
    """The bundled manifest as it is: bytes whose sha256 does not start with the prefix in the file name."""
    key = "rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth"
    data = blob(10_000, seed=5)
    hub.add_repo("rbarac/rtmpose3d", {key: data})
    dest = tmp_path / "checkpoints"
    r = run_cli("get", "rtmpose3d", "--only", key, "--dest", str(dest),
                env=cli_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home")))
    assert r.returncode == 1
    assert "235e8209" in r.stderr and sha256(data) in r.stderr
    assert not (dest / key).exists()


# --- medical-backbones: jinggqu/NextGen-UIA@69dd54f --------------------------------------------------

CLIP_B16 = ("https://openaipublic.azureedge.net/clip/models/"
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt")
DINOV2_B = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"
RESNET18 = "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # torchvision ResNet18_Weights.IMAGENET1K_V1
BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
METACLIP = "timm/vit_base_patch16_clip_224.metaclip_400m"
CLIPSEG = "CIDAS/clipseg-rd64-refined"


def medical_world() -> World:
    w = World()
    for url in (CLIP_B16, DINOV2_B, RESNET18):
        w.plain[url] = fake(url)
    # BiomedCLIP's open_clip_config.json names BiomedBERT as its HF text tower and tokenizer.
    open_clip_config = {"model_cfg": {"embed_dim": 512, "vision_cfg": {"timm_model_name": "vit_base_patch16_224",
                                                                       "timm_model_pretrained": False},
                                      "text_cfg": {"hf_model_name": BIOMEDBERT, "hf_tokenizer_name": BIOMEDBERT,
                                                   "hf_proj_type": "mlp", "context_length": 256}},
                        "preprocess_cfg": {}}
    w.hub[BIOMEDCLIP] = HubRepo({
        "open_clip_config.json": json.dumps(open_clip_config).encode(), "open_clip_pytorch_model.bin": fake("biomedclip"),
        "tokenizer.json": fake("biomedclip:tok"), "tokenizer_config.json": b"{}", "special_tokens_map.json": b"{}",
        "vocab.txt": fake("biomedclip:vocab"), "biomed_clip_example.ipynb": fake("nb"), "biomed-vlp-eval.svg": fake("svg"),
        "example_data/biomed_image_classification_example_data/squamous_cell_carcinoma_histopathology.jpeg": fake("jpg"),
        "README.md": b"# BiomedCLIP\n"})
    w.hub[BIOMEDBERT] = HubRepo({"config.json": b'{"model_type": "bert"}', "vocab.txt": fake("biomedbert:vocab"),
                                 "pytorch_model.bin": fake("biomedbert:weights"), "flax_model.msgpack": fake("flax"),
                                 "README.md": b"# BiomedBERT\n"})
    # A timm CLIP repo holds timm's files and OpenCLIP's.
    w.hub[METACLIP] = HubRepo({"config.json": b"{}", "model.safetensors": fake("metaclip:timm:st"),
                               "pytorch_model.bin": fake("metaclip:timm:bin"), "open_clip_config.json": b'{"model_cfg": {}}',
                               "open_clip_pytorch_model.bin": fake("metaclip:open_clip"), "README.md": b"# MetaCLIP\n"})
    w.hub[CLIPSEG] = HubRepo({"config.json": b'{"model_type": "clipseg"}', "pytorch_model.bin": fake("clipseg"),
                              "preprocessor_config.json": b"{}", "tokenizer_config.json": b"{}", "vocab.json": fake("v"),
                              "merges.txt": fake("m"), "special_tokens_map.json": b"{}", "README.md": b"# CLIPSeg\n"})
    return w


def medical_reads(world: World) -> list[HubRead]:
    text = json.loads(world.hub[BIOMEDCLIP].files["open_clip_config.json"])["model_cfg"]["text_cfg"]
    return [
        # src/models/biomedclip/*.py: create_model_from_pretrained("hf-hub:" + BIOMEDCLIP, cache_dir="./ckpt")
        *open_clip_hf_hub(BIOMEDCLIP, "BiomedCLIP create_model_from_pretrained"),
        # ... whose HF text tower reads its config (open_clip hf_model.py: AutoConfig.from_pretrained)
        HubRead(text["hf_model_name"], ("config.json",), "open_clip HFTextEncoder AutoConfig"),
        # get_tokenizer("hf-hub:" + BIOMEDCLIP) and src/models/unimedclip: HFTokenizer(BIOMEDBERT)
        *auto_tokenizer(text["hf_tokenizer_name"], "HFTokenizer AutoTokenizer"),
        # src/models/metaclip/*.py: create_model_from_pretrained("hf-hub:" + METACLIP, cache_dir="./ckpt")
        *open_clip_hf_hub(METACLIP, "MetaCLIP create_model_from_pretrained"),
        # src/third_party/openai_clip/clipseg_adapter.py: CLIPSegForImageSegmentation.from_pretrained(CLIPSEG)
        *transformers_model(CLIPSEG, "CLIPSegForImageSegmentation.from_pretrained"),
    ]


def test_medical_backbones_every_file_where_nextgen_uia_reads_it(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    world = medical_world()
    world.serve(hub, server)
    manifest = pinned_copy("medical-backbones", tmp_path / "manifests",
                           {"ViT-B-16.pt": world.plain[CLIP_B16], "dinov2_vitb14_pretrain.pth": world.plain[DINOV2_B],
                            "checkpoints/resnet18-f37072fd.pth": world.plain[RESNET18]})
    ckpt = tmp_path / "NextGen-UIA" / "ckpt"
    r = run_get(manifest, ckpt, world, hub, server, tmp_path, "--variant", "automatic")
    assert r.returncode == 0, r.stderr
    # src/models/clip/*.py --ckpt ckpt/ViT-B-16.pt; src/models/dino/*.py ckpt/dinov2_vitb14_pretrain.pth.
    assert (ckpt / "ViT-B-16.pt").read_bytes() == world.plain[CLIP_B16]
    assert (ckpt / "dinov2_vitb14_pretrain.pth").read_bytes() == world.plain[DINOV2_B]
    # src/models/baselines/*classification.py: torch.hub.set_dir("./ckpt/") before torchvision's resnet18.
    assert torch_hub_file(ckpt, RESNET18).read_bytes() == world.plain[RESNET18]
    # The Hub files, read with HF_HUB_CACHE=ckpt (which the cache_dir="./ckpt" calls share).
    read = check_hub_reads(ckpt, world, medical_reads(world))
    assert cached_files(ckpt) == read, "only what open_clip, its tokenizer and transformers read"
    assert run_cli("verify", str(ckpt), "--strict").returncode == 0


def test_medical_backbones_unimed_clip_is_manual_and_brings_its_tokenizer(hub: FakeHub, server: TestServer,
                                                                        tmp_path: Path) -> None:
    world = medical_world()
    world.serve(hub, server)
    manifest = pinned_copy("medical-backbones", tmp_path / "manifests", {})
    ckpt = tmp_path / "NextGen-UIA" / "ckpt"
    r = run_get(manifest, ckpt, world, hub, server, tmp_path, "--variant", "unimed-clip")
    assert r.returncode == 1
    assert "unimed_clip_vit_b16.pt is missing and must be fetched by hand" in r.stderr
    assert "https://mbzuaiac-my.sharepoint.com/" in r.stderr
    # src/models/unimedclip/{zero_shot,finetune}.py: HFTokenizer("microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract").
    read = check_hub_reads(ckpt, world, auto_tokenizer(BIOMEDBERT, "UniMed-CLIP HFTokenizer"))
    assert cached_files(ckpt) == read
    (ckpt / "unimed_clip_vit_b16.pt").write_bytes(b"a checkpoint saved from the browser")
    r = run_get(manifest, ckpt, world, hub, server, tmp_path, "--variant", "unimed-clip")
    assert r.returncode == 0, r.stderr
    r = run_cli("verify", str(ckpt))
    assert r.returncode == 0 and "unimed_clip_vit_b16.pt: OK" in r.stdout


# --- 3dfeatprobe: tavis-siebert/3DFeatProbe@087e028 ---------------------------------------------------

MUM = "https://github.com/davnords/mum/releases/download/weights/MuM_ViTLarge.pth"  # davnords/mum: mum/vit_model.py
ASSET = ("https://release-assets.githubusercontent.com/github-production-release-asset/1072301974/"
         "5c1d3b0e-0d44-4bb2-9e59-5d3a5c7b1e2f")
SIGNED = ("?sp=r&sv=2018-11-09&sr=b&spr=https&se=2026-06-30T10%3A15%3A00Z&rscd=attachment%3B+filename%3DMuM_ViTLarge.pth"
          "&rsct=application%2Foctet-stream&skoid=96c2d410&sig=SIGsecretValue0123%2Bab%3D&jwt=eyJhbGciOiJIUzI1NiJ9.JWTsecret")
SIZES = ("small", "base", "large", "giant")
DINOV3 = ("small", "small_plus", "base", "large", "huge_plus", "7b")


def featprobe_world() -> tuple[World, list[HubRead]]:
    """Every repo 3DFeatProbe's extractors load, with the files the real repos hold, and the reads."""
    w, reads = World(), []

    def repo(repo_id: str, names: list[str], **kw: object) -> None:
        w.hub[repo_id] = HubRepo({n: fake(f"{repo_id}:{n}", 300 if n.endswith(".json") else 2000) for n in names}
                                 | {"README.md": f"# {repo_id}\n".encode()}, **kw)  # type: ignore[arg-type]

    for s in SIZES:  # src/models/feature_extractors/dino.py _init_with_hf: AutoModel.from_pretrained
        repo(f"facebook/dinov2-{s}", ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"])
        repo(f"facebook/dinov2-with-registers-{s}", ["config.json", "preprocessor_config.json", "model.safetensors"])
        reads += transformers_model(f"facebook/dinov2-{s}", "DINOv2 AutoModel")
        reads += transformers_model(f"facebook/dinov2-with-registers-{s}", "DINOv2 registers AutoModel")
        for timm_name in (f"vit_{s}_patch14_dinov2.lvd142m", f"vit_{s}_patch14_reg4_dinov2.lvd142m"):  # _init_with_timm
            repo(f"timm/{timm_name}", ["config.json", "model.safetensors", "pytorch_model.bin"])
            reads += timm_pretrained(f"timm/{timm_name}", "DINOv2 timm.create_model")
    for s in DINOV3:  # DINOv3: timm.create_model(f"vit_{backbone}_patch16_dinov3.lvd1689m", pretrained=True)
        repo(f"timm/vit_{s}_patch16_dinov3.lvd1689m", ["config.json", "model.safetensors", "pytorch_model.bin"])
        reads += timm_pretrained(f"timm/vit_{s}_patch16_dinov3.lvd1689m", "DINOv3 timm.create_model")
    hf_clip = ["config.json", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "preprocessor_config.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]
    for b in ("vit-large-patch14", "vit-base-patch16", "vit-base-patch32"):  # clip.py: CLIPVisionModel.from_pretrained
        # Only vit-large-patch14's main holds model.safetensors; the base ones keep it in pull-request branches.
        repo(f"openai/clip-{b}", hf_clip + (["model.safetensors"] if b == "vit-large-patch14" else []))
        reads += transformers_model(f"openai/clip-{b}", "CLIPVisionModel")
    for s in ("base", "large", "huge"):  # mae.py: ViTMAEModel.from_pretrained
        repo(f"facebook/vit-mae-{s}", ["config.json", "pytorch_model.bin", "tf_model.h5", "preprocessor_config.json"]
             + (["model.safetensors"] if s == "base" else []))
        reads += transformers_model(f"facebook/vit-mae-{s}", "ViTMAEModel")
    repo("facebook/VGGT-1B", ["config.json", "model.safetensors", "model.pt"])  # src/models/vggt.py
    reads += hub_mixin("facebook/VGGT-1B", "VGGT.from_pretrained")
    # GitHub answers a release download with a redirect to its asset host, with a signed, short-lived query.
    w.redirects[MUM] = ASSET + SIGNED
    w.plain[ASSET] = fake("MuM_ViTLarge.pth", 5000)
    return w, reads


def test_3dfeatprobe_every_backbone_where_its_loader_reads_it(hub: FakeHub, server: TestServer, tmp_path: Path) -> None:
    world, reads = featprobe_world()
    world.serve(hub, server)
    manifest = pinned_copy("3dfeatprobe", tmp_path / "manifests", {})
    checkout = tmp_path / "3DFeatProbe"
    dest = checkout / "hub"
    r = run_get(manifest, dest, world, hub, server, tmp_path, "--minimal")
    assert r.returncode == 0, r.stderr
    # configs/model/dinov2.yaml (the default benchmark's model): backbone base, use_timm, with_registers.
    assert cached_files(dest) == {("timm/vit_base_patch14_reg4_dinov2.lvd142m", "model.safetensors")}
    r = run_get(manifest, dest, world, hub, server, tmp_path)
    assert r.returncode == 0, r.stderr
    # HF_HUB_CACHE=hub: each loader finds, offline, what it reads online -- and nothing else was fetched.
    read = check_hub_reads(dest, world, reads)
    assert cached_files(dest) == read
    # MuM with TORCH_HOME=<checkout>: torch hub's dir is <checkout>/hub.
    assert torch_hub_file(checkout / "hub", MUM).read_bytes() == world.plain[ASSET]
    assert run_cli("verify", str(dest), "--strict").returncode == 0
    assert "sig=" not in r.stdout + r.stderr and "JWTsecret" not in (dest / ".ckptfetch/record.json").read_text()


def test_3dfeatprobe_variants_name_every_backbone() -> None:
    m = load_manifest(MANIFESTS / "3dfeatprobe.yaml")
    for fam, n in (("dinov2", 4), ("dinov2-reg", 4), ("dinov2-timm", 4), ("dinov2-timm-reg", 4), ("dinov3", 6),
                   ("clip", 3), ("mae", 3)):
        assert len({e.path.split("/")[0] for e in m.select([fam])}) == n, fam
    for key in m.files:
        assert m.files[key] in m.select([key.split("/")[0]]), key
    # DINOv3 huge is not in timm (timm/models/eva.py registers small, small_plus, base, large, huge_plus, 7b).
    assert not m.select(only=["dinov3-huge/*"])


# --- GitHub release assets: the redirect to the asset host ---------------------------------------------

RELEASE_HOSTS = ["github.com", "release-assets.githubusercontent.com"]


@pytest.fixture(scope="module")
def release_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHosts]:
    with FakeHosts(tmp_path_factory.mktemp("pki"), RELEASE_HOSTS) as fake_hosts:
        yield fake_hosts


def release_world(hosts: FakeHosts) -> tuple[bytes, str]:
    gh, assets = hosts["github.com"], hosts["release-assets.githubusercontent.com"]
    gh.clear_log()
    assets.clear_log()
    data = fake("MuM_ViTLarge.pth", 5000)
    path = "/davnords/mum/releases/download/weights/MuM_ViTLarge.pth"
    gh.redirect(path, ASSET + SIGNED)
    assets.add(ASSET.removeprefix("https://release-assets.githubusercontent.com"), data)
    return data, path


def test_github_release_asset_through_its_real_redirect(release_hosts: FakeHosts, tmp_path: Path) -> None:
    """The bundled 3dfeatprobe's MuM URL as it is, over TLS, with an HF token and GitHub's signed redirect."""
    data, path = release_world(release_hosts)
    dest = tmp_path / "hub"
    env = cli_env(**release_hosts.env, HF_TOKEN="hf_userTOKENsecret")
    r = run_cli("get", "3dfeatprobe", "--variant", "mum", "--dest", str(dest), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert torch_hub_file(dest, MUM).read_bytes() == data
    assets = release_hosts["release-assets.githubusercontent.com"]
    assert release_hosts["github.com"].hits(path) >= 1 and assets.requests
    assert all(q.path.endswith(SIGNED) for q in assets.requests), "the signed query reaches the asset host intact"
    for server in (release_hosts["github.com"], assets):
        for q in server.requests:
            assert not {"authorization", "cookie"} & set(q.headers), q.headers
            assert "hf_userTOKENsecret" not in json.dumps(dict(q.headers))
    for text in (r.stdout, r.stderr, (dest / ".ckptfetch/record.json").read_text()):
        assert "SIGsecretValue" not in text and "JWTsecret" not in text


def test_github_release_credentials_stay_with_github(release_hosts: FakeHosts, tmp_path: Path) -> None:
    """A token in the URL reaches github.com and never the asset host; --debug prints neither it nor the signature."""
    data, path = release_world(release_hosts)
    doc = bundled("3dfeatprobe")
    doc["files"] = {"mum/MuM_ViTLarge.pth": dict(doc["files"]["mum/MuM_ViTLarge.pth"],  # type: ignore[index]
                                                 url=MUM.replace("https://", "https://x-access-token:ghsSECRET@"))}
    doc["variants"] = {}
    (tmp_path / "m").mkdir()
    manifest = tmp_path / "m" / "3dfeatprobe.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    dest = tmp_path / "hub"
    r = run_cli("--debug", "get", str(manifest), "--dest", str(dest), env=cli_env(**release_hosts.env))
    assert r.returncode == 0, r.stderr
    assert torch_hub_file(dest, MUM).read_bytes() == data
    gh, assets = release_hosts["github.com"], release_hosts["release-assets.githubusercontent.com"]
    assert gh.requests[0].headers["authorization"].startswith("Basic "), "the URL's credentials reach their host"
    assert assets.requests and all("authorization" not in q.headers for q in assets.requests)
    for text in (r.stdout, r.stderr):
        assert "ghsSECRET" not in text and "SIGsecretValue" not in text and "JWTsecret" not in text


def test_github_release_retry_asks_github_for_a_fresh_signature(release_hosts: FakeHosts, tmp_path: Path) -> None:
    """GitHub's signed asset URLs expire: after a broken transfer the retry goes back to github.com, whose new
    redirect carries a new signature, and never asks the asset host with the old one again."""
    gh, assets = release_hosts["github.com"], release_hosts["release-assets.githubusercontent.com"]
    gh.clear_log()
    assets.clear_log()
    path = "/davnords/mum/releases/download/weights/MuM_ViTLarge.pth"
    old, new = SIGNED.replace("SIGsecretValue", "SIGoldValue"), SIGNED.replace("SIGsecretValue", "SIGnewValue")
    gh.fault(path, "redirect", location=ASSET + old)  # the first answer; later ones redirect with the new signature
    gh.redirect(path, ASSET + new)
    asset_path = ASSET.removeprefix("https://release-assets.githubusercontent.com")
    data = blob(400_000, seed=77)
    assets.add(asset_path, data)
    assets.fault(asset_path + old, "reset", at=150_000)
    for _ in range(5):  # what the asset host says to an expired signature
        assets.fault(asset_path + old, "status", status=403, content_type="application/xml",
                     body=b"<Error><Code>AuthenticationFailed</Code><Message>Signature not valid in the specified "
                          b"time frame</Message></Error>")
    dest = tmp_path / "hub"
    r = run_cli("get", "3dfeatprobe", "--variant", "mum", "--dest", str(dest), env=cli_env(**release_hosts.env))
    assert r.returncode == 0, r.stderr
    assert torch_hub_file(dest, MUM).read_bytes() == data
    assert gh.hits(path) >= 2, "the retry asked github.com again"
    assert assets.hits(asset_path + old) == 1, "the expired signature was used once, for the broken transfer"
    assert assets.hits(asset_path + new) >= 1
    assert "SIGoldValue" not in r.stdout + r.stderr and "SIGnewValue" not in r.stdout + r.stderr
