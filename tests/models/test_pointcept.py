"""Loading Pointcept-style PTv3 checkpoints by name (srkd.models.load_pointcept_checkpoint)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from srkd.errors import CheckpointError
from srkd.models import create_model, load_pointcept_checkpoint
from srkd.models.pointcept import strip_prefixes


def pointcept_keys(model: torch.nn.Module, ddp: bool = True) -> dict[str, torch.Tensor]:
    """The model's tensors named as a DDP-wrapped Pointcept DefaultSegmentorV2 saves them."""
    lead = "module." if ddp else ""
    return {
        (lead + k if k.startswith("seg_head.") else f"{lead}backbone.{k}"): v.clone()
        for k, v in model.state_dict().items()
    }


def randomised(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def test_parameter_names_follow_pointcept_ptv3m1():
    # names from Pointcept's point_transformer_v3m1_base.py + DefaultSegmentorV2
    keys = set(create_model("test_ptv3").state_dict())
    for k in [
        "embedding.stem.conv.weight", "embedding.stem.norm.running_var",
        "enc.enc0.block0.cpe.0.weight", "enc.enc0.block0.cpe.0.bias", "enc.enc0.block0.cpe.1.weight",
        "enc.enc0.block0.cpe.2.weight", "enc.enc0.block0.norm1.0.weight", "enc.enc0.block0.attn.qkv.weight",
        "enc.enc0.block0.attn.proj.bias", "enc.enc0.block0.norm2.0.bias", "enc.enc0.block0.mlp.0.fc1.weight",
        "enc.enc0.block0.mlp.0.fc2.bias", "enc.enc1.down.proj.weight", "enc.enc1.down.norm.0.weight",
        "dec.dec1.up.proj.0.weight", "dec.dec1.up.proj.1.running_mean", "dec.dec0.up.proj_skip.0.weight",
        "dec.dec0.up.proj_skip.1.bias", "dec.dec0.block0.attn.qkv.weight", "seg_head.weight",
    ]:
        assert k in keys, k
    sd = create_model("ptv3_base").state_dict()
    assert tuple(sd["embedding.stem.conv.weight"].shape) == (32, 5, 5, 5, 6)  # spconv KRSC layout
    assert tuple(sd["enc.enc4.block0.attn.qkv.weight"].shape) == (1536, 512)
    assert tuple(sd["dec.dec3.up.proj.0.weight"].shape) == (256, 512)
    assert tuple(sd["seg_head.weight"].shape) == (20, 64)


def test_strip_prefixes():
    assert strip_prefixes("module.backbone.enc.enc0.block0.attn.qkv.weight") == "enc.enc0.block0.attn.qkv.weight"
    assert strip_prefixes("module.seg_head.bias") == "seg_head.bias"
    assert strip_prefixes("backbone.embedding.stem.conv.weight") == "embedding.stem.conv.weight"


@pytest.mark.parametrize("ddp", [True, False])
def test_prefixed_checkpoint_file_loads_and_reproduces_outputs(tmp_path, ddp):
    src = randomised("test_ptv3", 0).eval()
    path = tmp_path / "model_best.pth"
    # Pointcept's saver stores the metric as a numpy float64 (mIoU = np.mean(...))
    ckpt = {"epoch": 7, "best_metric_value": np.float64(0.5), "state_dict": pointcept_keys(src, ddp)}
    torch.save(ckpt, path)
    dst = randomised("test_ptv3", 1)
    report = load_pointcept_checkpoint(path, dst)
    assert report.ok and not report.unexpected and report.source == str(path)
    assert len(report.loaded) == len(dst.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_missing_key_is_named(tmp_path):
    state = pointcept_keys(create_model("test_ptv3"))
    del state["module.backbone.enc.enc1.block0.attn.qkv.weight"]
    with pytest.raises(CheckpointError, match=r"missing 1 keys: enc\.enc1\.block0\.attn\.qkv\.weight"):
        load_pointcept_checkpoint({"state_dict": state}, create_model("test_ptv3"))
    report = load_pointcept_checkpoint(state, create_model("test_ptv3"), strict=False)
    assert report.missing == ["enc.enc1.block0.attn.qkv.weight"] and not report.ok


def test_unexpected_keys_are_reported_not_fatal():
    state = pointcept_keys(create_model("test_ptv3"))
    state["module.backbone.enc.enc0.block0.attn.rpe.rpe_table"] = torch.zeros(3, 1)
    report = load_pointcept_checkpoint(state, create_model("test_ptv3"))
    assert report.ok and report.unexpected == ["enc.enc0.block0.attn.rpe.rpe_table"]
    assert "1 unexpected" in report.summary()


def test_other_class_count_is_refused_with_a_hint():
    state = pointcept_keys(create_model("test_ptv3", num_classes=200))
    with pytest.raises(CheckpointError, match="seg_head.weight.*200 classes"):
        load_pointcept_checkpoint(state, create_model("test_ptv3"))
    report = load_pointcept_checkpoint(state, create_model("test_ptv3"), strict=False)
    assert sorted(k for k, _, _ in report.mismatched) == ["seg_head.bias", "seg_head.weight"]


def test_unreadable_sources_raise(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pointcept_checkpoint(tmp_path / "nope.pth", create_model("test_ptv3"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_pointcept_checkpoint(bad, create_model("test_ptv3"))
    with pytest.raises(CheckpointError, match="no tensors"):
        load_pointcept_checkpoint({"state_dict": {"epoch": 1}}, create_model("test_ptv3"))


class _RunsCode:
    """Pickles as a call of `os.system`: what a malicious checkpoint would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _old_torch_training_checkpoint(model: torch.nn.Module) -> dict:
    """A Pointcept checkpoint as torch < 2.4 wrote it: OneCycleLR's state held `anneal_func`, a
    bound method (pickled as builtins.getattr on the whole scheduler and its optimizer)."""
    opt = torch.optim.AdamW(model.parameters(), lr=0.002)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.002, total_steps=10)
    scheduler_state = {**sched.state_dict(), "anneal_func": sched._anneal_func}
    return {"epoch": 3, "state_dict": pointcept_keys(model), "optimizer": opt.state_dict(),
            "scheduler": scheduler_state, "best_metric_value": np.float64(0.7)}


def test_old_torch_checkpoint_loads_its_weights_without_running_anything(tmp_path):
    src = randomised("test_ptv3", 0)
    path = tmp_path / "model_best.pth"
    torch.save(_old_torch_training_checkpoint(src), path)
    with pytest.raises(pickle.UnpicklingError):  # what made srkd refuse such files before
        torch.load(path, weights_only=True)
    dst = randomised("test_ptv3", 1)
    report = load_pointcept_checkpoint(path, dst)
    assert report.ok and "torch.optim.lr_scheduler.OneCycleLR" in report.inert
    assert "builtins.getattr" in report.inert and "not run" in report.summary()
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_code_in_a_checkpoint_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    src = create_model("test_ptv3")
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": pointcept_keys(src), "hook": _RunsCode(marker)}, path)
    report = load_pointcept_checkpoint(path, create_model("test_ptv3"))
    assert not marker.exists() and report.ok
    assert any(name.endswith(".system") for name in report.inert), report.inert


def test_setting_state_on_a_trusted_object_is_refused(tmp_path):
    from srkd.models.inert_pickle import load_inert

    class SetsState:  # BUILD on a real (allow-listed) object: e.g. rewriting a function's attributes
        def __reduce__(self):
            return (torch.Size, ((1,),), {"x": 1})

    path = tmp_path / "build.pth"
    torch.save({"a": SetsState()}, path)
    with pytest.raises(pickle.UnpicklingError, match="refusing to set the state"):
        load_inert(path)
