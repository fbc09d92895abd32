"""Pretrained loading (file, dlforge checkpoint, hub cache), freezing, gradual unfreezing."""

from __future__ import annotations

import pytest
import torch
import torchvision

from dlforge.errors import InputError, NotFoundError
from dlforge.models import create_model
from dlforge.models.weights import (
    freeze_backbone,
    gradual_unfreeze,
    head_module,
    hub_weights_path,
    layer_groups,
    load_pretrained,
    unfreeze_all,
)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_loads_backbone_from_another_runs_checkpoint_and_skips_the_head(tmp_path) -> None:
    torch.manual_seed(1)
    donor = create_model("cnn-small", 10)
    # A dlforge engine checkpoint: weights under "model" next to optimizer state etc.
    ckpt = {"model": donor.state_dict(), "optimizer": {"state": {}}, "epoch": 3, "metrics": {"acc": 0.9}}
    torch.save(ckpt, tmp_path / "best.pt")

    torch.manual_seed(2)
    model = create_model("cnn-small", 3)
    report = load_pretrained(model, tmp_path / "best.pt")
    assert {k for k, _, _ in report.skipped} == {"head.weight", "head.bias"}
    assert report.missing == ["head.bias", "head.weight"]
    assert report.unexpected == []
    state, donor_state = model.state_dict(), donor.state_dict()
    for key in report.loaded:
        assert torch.equal(state[key], donor_state[key]), key
    assert not torch.equal(state["head.weight"][:3], donor_state["head.weight"][:3])
    assert "skipped" in report.summary() and report.to_dict()["loaded"] == len(report.loaded)


def test_plain_and_wrapped_state_dicts_load(tmp_path) -> None:
    donor = create_model("cnn-small", 3)
    torch.save({f"module.{k}": v for k, v in donor.state_dict().items()}, tmp_path / "ddp.pt")
    model = create_model("cnn-small", 3)
    report = load_pretrained(model, tmp_path / "ddp.pt")
    assert report.skipped == [] and report.missing == []
    assert torch.equal(model.head.weight, donor.head.weight)


def test_hub_source_reads_the_torch_hub_cache_and_never_downloads(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = create_model("resnet18", 3)
    with pytest.raises(InputError, match="never downloads"):
        load_pretrained(model, "hub")
    # Put an ImageNet-shaped (1000-class) torchvision resnet18 state dict where torchvision would cache it.
    path = hub_weights_path("resnet18")
    assert path.name.startswith("resnet18-") and path.parent == tmp_path / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    report = load_pretrained(model, "hub")
    assert {k for k, _, _ in report.skipped} == {"fc.weight", "fc.bias"}
    assert torch.equal(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(InputError, match="arch"):
        load_pretrained(create_model("cnn-small", 3), "hub")


def test_rgb_input_conv_is_adapted_for_grey_models(tmp_path) -> None:
    rgb = create_model("cnn-small", 3).eval()
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    grey = create_model("cnn-small", 3, in_chans=1).eval()
    report = load_pretrained(grey, tmp_path / "rgb.pt")
    assert report.adapted == ["stem.0.weight"] and report.skipped == []
    # A grey image through the adapted model == the same image as R = G = B through the RGB one.
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-4)
    four = create_model("cnn-small", 3, in_chans=4)
    assert load_pretrained(four, tmp_path / "rgb.pt").adapted == ["stem.0.weight"]
    assert four.stem[0].weight.shape[1] == 4


def test_bad_sources_raise_one_line_errors(tmp_path) -> None:
    model = create_model("cnn-small", 3)
    with pytest.raises(NotFoundError, match="missing.pt"):
        load_pretrained(model, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt") as exc:
        load_pretrained(model, tmp_path / "junk.pt")
    assert "\n" not in str(exc.value)
    # Another architecture: only "head.bias" (3,) matches by name and shape -> refused.
    torch.save(create_model("textcnn", 3, vocab_size=30).state_dict(), tmp_path / "text.pt")
    with pytest.raises(InputError, match="no backbone tensor matches"):
        load_pretrained(model, tmp_path / "text.pt")


def test_freeze_backbone_then_a_step_changes_only_the_head() -> None:
    torch.manual_seed(0)
    model = create_model("cnn-small", 3)
    n_head = sum(p.numel() for p in model.head.parameters())
    assert freeze_backbone(model) == n_head
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # all params: frozen ones get no grad
    model.eval()  # keep BatchNorm statistics fixed so only learned weights can move
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 16, 16)), torch.randint(0, 3, (8,)))
    loss.backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.weight", "head.bias"}
    assert unfreeze_all(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "kwargs", "head"),
    [
        ("cnn-small", {}, "head"),
        ("resnet18", {}, "fc"),
        ("mobilenet_v3_small", {}, "classifier"),
        ("transformer", {"vocab_size": 30, "max_len": 16}, "head"),
        ("bilstm", {"vocab_size": 30, "layers": 2}, "head"),
    ],
)
def test_gradual_unfreeze_opens_groups_from_the_output_side(name, kwargs, head) -> None:
    model = create_model(name, 3, **kwargs)
    assert head_module(model) is getattr(model, head)
    groups = layer_groups(model)
    assert len(groups) >= 3
    head_params = {f"{head}.{n}" for n, _ in getattr(model, head).named_parameters()}
    assert gradual_unfreeze(model, 0) == 0 and _trainable(model) == head_params
    previous = head_params
    for stage in range(1, len(groups)):
        gradual_unfreeze(model, stage)
        now = _trainable(model)
        assert previous < now  # strictly more each stage
        last = {id(p) for p in groups[-stage].parameters()}
        assert all(p.requires_grad for p in model.parameters() if id(p) in last)
        first = groups[0]
        assert not any(p.requires_grad for p in first.parameters())  # input side still frozen
        previous = now
    assert gradual_unfreeze(model, len(groups) + 5) == len(groups)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(InputError, match="stage"):
        gradual_unfreeze(model, -1)


def test_freeze_lower_groups_freezes_from_the_input_side() -> None:
    pytest.importorskip("transformers")
    from dlforge.models.weights import freeze_lower_groups, layer_groups

    model = create_model("hf-encoder", 2, vocab_size=50)  # groups: embeddings, layer 0, layer 1
    groups = layer_groups(model)
    assert len(groups) == 3
    total = sum(p.numel() for p in model.parameters())
    trainable = freeze_lower_groups(model, 2)
    assert trainable == total - sum(p.numel() for g in groups[:2] for p in g.parameters())
    assert not any(p.requires_grad for g in groups[:2] for p in g.parameters())
    assert all(p.requires_grad for p in [*groups[2].parameters(), *model.head.parameters()])
    # frozen groups run as at inference (no dropout) while the rest trains
    model.train()
    assert [g.training for g in groups] == [False, False, True] and model.head.training
    model.eval()
    assert not groups[2].training
    with pytest.raises(InputError, match="freeze_layers"):
        freeze_lower_groups(model, 3)
