"""Model registry: names, errors, options, custom registration, text-model masking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlforge.errors import InputError
from dlforge.models import create_model, get_model_info, list_models, register_model
from dlforge.models import registry as reg


def test_list_models_filters_by_task_and_sorts() -> None:
    image = [m.name for m in list_models("image_classification")]
    assert image == sorted(image)
    assert "cnn-small" in image and "textcnn" not in image
    text = list_models("text_classification")
    assert {m.name for m in text} >= {"textcnn", "bilstm", "transformer"}
    assert all(m.input_names == ("input_ids", "attention_mask") for m in text)
    info = get_model_info("cnn-small")
    assert info.to_dict()["min_input_size"] == 8
    assert info.input_names == ("image",) and info.output_names == ("logits",)


def test_unknown_or_wrong_task_names_list_the_choices() -> None:
    with pytest.raises(InputError, match="cnn-small") as exc:
        create_model("resnet-9000", 3, task="image_classification")
    assert "\n" not in str(exc.value)
    assert "textcnn" not in str(exc.value)  # only this task's names
    with pytest.raises(InputError, match="textcnn"):
        create_model("cnn-small", 3, task="text_classification")
    with pytest.raises(InputError, match="unknown model"):
        get_model_info("nope")


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="num_classes"):
        create_model("cnn-small", 0)
    with pytest.raises(InputError, match="unexpected keyword"):
        create_model("cnn-small", 3, no_such_option=1)
    with pytest.raises(InputError, match="dropout"):
        create_model("resnet18", 3, dropout=1.5)
    with pytest.raises(InputError, match="vocab_size"):
        create_model("textcnn", 3, vocab_size=1)


@pytest.mark.parametrize("name", ["cnn-small", "resnet18", "mobilenet_v3_small"])
def test_image_models_take_other_channel_counts_and_sizes(name: str) -> None:
    model = create_model(name, 4, in_chans=1, dropout=0.3).eval()
    info = get_model_info(name)
    x = torch.randn(2, 1, info.min_input_size, info.min_input_size + 8)  # non-square, smallest side
    with torch.no_grad():
        assert model(x).shape == (2, 4)


def test_cnn_small_dropout_is_active_only_in_train_mode() -> None:
    model = create_model("cnn-small", 3, dropout=0.5)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", ["textcnn", "bilstm", "transformer"])
def test_text_logits_do_not_depend_on_padding(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 3, vocab_size=50, max_len=40).eval()
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 0, 0, 0, 0], [2, 11, 12, 0, 0, 0, 0, 0, 0, 0]])
    longer = torch.cat([ids, torch.zeros(2, 12, dtype=torch.long)], dim=1)
    with torch.no_grad():
        base = model(ids)
        torch.testing.assert_close(model(longer), base, atol=1e-5, rtol=0)
        # Mask given explicitly == mask derived from [PAD] = 0.
        torch.testing.assert_close(model(ids, (ids != 0).long()), base)
        # A 3-token text alone, unpadded, gives the same logits as inside the batch.
        torch.testing.assert_close(model(ids[1:, :3])[0], base[1], atol=1e-5, rtol=0)


def test_transformer_rejects_sequences_longer_than_max_len() -> None:
    model = create_model("transformer", 2, vocab_size=20, max_len=8)
    with pytest.raises(InputError, match="max_len"):
        model(torch.ones(1, 9, dtype=torch.long))


def test_custom_registration_round_trip_and_duplicates() -> None:
    def check(out, batch, num_classes):
        assert out.shape == (batch, num_classes, 4)

    @register_model(
        "test-tiny-dense", task="test_task", default_input_size=12, description="test", check_output=check
    )
    def tiny(num_classes: int, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, num_classes * 4), nn.Unflatten(1, (-1, 4)))

    try:
        info = get_model_info("test-tiny-dense")
        assert [m.name for m in list_models("test_task")] == ["test-tiny-dense"]
        (x,) = info.example_inputs(5)
        assert x.shape == (5, 3, 12, 12)
        model = create_model("test-tiny-dense", 2, width=8)
        info.check_output(model(x), 5, 2)
        assert not info.has_train_loss  # custom output, no hook: the conformance test skips backward
        with pytest.raises(ValueError, match="already registered"):

            @register_model("test-tiny-dense", task="test_task")
            def other(num_classes: int) -> nn.Module:
                return nn.Linear(1, num_classes)
    finally:
        reg._REGISTRY.pop("test-tiny-dense", None)
    assert "test-tiny-dense" not in {m.name for m in list_models()}


def test_default_text_example_inputs_include_padding() -> None:
    ids, mask = get_model_info("textcnn").example_inputs(4, seq_len=10, vocab_size=30)
    assert ids.dtype == mask.dtype == torch.int64 and ids.shape == (4, 10)
    assert ids.max() < 30 and (ids[mask == 0] == 0).all()
    assert mask[1].sum() == 5 and mask[0].sum() == 10
