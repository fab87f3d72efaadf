"""extract_features / evaluate_model on a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spal.evaluation import evaluate, evaluate_model, extract_features


class TinyNet(nn.Module):
    """(B, 3, 4, 2) images -> (B, 5) features; dropout makes train and eval mode differ."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 2, 5)
        self.dropout = nn.Dropout(p=0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear(images.flatten(1)))


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(10, 3, 4, 2, generator=torch.Generator().manual_seed(1))


def expected_features(model: TinyNet, images: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.linear(images.flatten(1)), dim=1).detach()


def test_features_are_in_order_normalised_and_from_eval_mode(model, images):
    features = extract_features(model, [images[:4], images[4:7], images[7:]])
    assert features.shape == (10, 5)
    assert features.dtype == torch.float32 and features.device.type == "cpu"
    assert not features.requires_grad
    torch.testing.assert_close(features, expected_features(model, images))
    torch.testing.assert_close(features.norm(dim=1), torch.ones(10))


def test_tuple_batches_use_element_zero(model, images):
    batches = [(images[:6], torch.arange(6), ["a"] * 6), [images[6:], torch.arange(4)]]
    torch.testing.assert_close(extract_features(model, batches), expected_features(model, images))


@pytest.mark.parametrize("training", [True, False])
def test_previous_mode_is_restored(model, images, training):
    model.train(training)
    extract_features(model, [images])
    assert model.training is training


def test_mode_is_restored_after_an_error(model):
    model.train()
    with pytest.raises(TypeError, match="element 0"):
        extract_features(model, [("not a tensor",)])
    assert model.training


def test_empty_batches_are_an_error(model):
    with pytest.raises(ValueError, match="no images"):
        extract_features(model, [])


def test_model_output_must_be_two_dimensional(images):
    with pytest.raises(ValueError, match=r"\(batch, dims\)"):
        extract_features(nn.Identity(), [images])


def test_evaluate_model_equals_evaluate_on_extracted_features(model, images):
    query_records = [(f"q{i}.jpg", i % 3, 0) for i in range(4)]
    gallery_records = [(f"g{i}.jpg", i % 3, 1 + i % 2) for i in range(6)]
    result = evaluate_model(model, [images[:4]], [images[4:7], images[7:]], query_records, gallery_records)
    features = expected_features(model, images)
    expected = evaluate(features[:4], features[4:], [0, 1, 2, 0], [0, 1, 2, 0, 1, 2], [0] * 4, [1, 2, 1, 2, 1, 2])
    assert result == pytest.approx(expected)
    assert result["num_valid_queries"] == 4


def test_evaluate_model_rejects_a_record_count_mismatch(model, images):
    records = [("q.jpg", 0, 0)] * 3
    with pytest.raises(ValueError, match="no shuffle"):
        evaluate_model(model, [images[:4]], [images[4:]], records, [("g.jpg", 0, 1)] * 6)
