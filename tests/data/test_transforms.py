"""Decoding, the test transform and the batched training augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spal.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageLoadError,
    TrainAugment,
    iterate_tensor_batches,
    load_images,
    make_eval_loader,
    normalize,
)
from spal.data.transforms import erase, erasing_boxes, pad_crop

H, W = 16, 8


def _write_jpegs(folder, count: int) -> list[tuple[str, int, int]]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        array = rng.integers(0, 256, size=(32, 16, 3), dtype=np.uint8)
        path = folder / f"{i:04d}_c1s1_000001_00.jpg"
        Image.fromarray(array).save(path, quality=95)
        records.append((str(path), i, 0))
    return records


def test_load_images_matches_pil_and_threads_agree(tmp_path) -> None:
    records = _write_jpegs(tmp_path, 5)
    images = load_images(records, H, W)
    assert images.shape == (5, 3, H, W) and images.dtype == torch.uint8
    with Image.open(records[3][0]) as img:
        expected = np.array(img.convert("RGB").resize((W, H), Image.Resampling.BICUBIC))
    assert torch.equal(images[3], torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(load_images([r[0] for r in records], H, W, workers=2), images)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_file_error_names_it(tmp_path, workers: int) -> None:
    records = _write_jpegs(tmp_path, 3)
    bad = tmp_path / "0099_c2s1_000001_00.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageLoadError, match="0099_c2s1_000001_00.jpg"):
        load_images([*records, (str(bad), 99, 1)], H, W, workers=workers)


def test_eval_paths_agree_with_normalize(tmp_path) -> None:
    records = _write_jpegs(tmp_path, 5)
    images = load_images(records, H, W)
    expected = normalize(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(expected, (images.float() / 255 - mean) / std)
    batches = list(iterate_tensor_batches(images, 2, "cpu"))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    torch.testing.assert_close(torch.cat(batches), expected)
    loaded = list(make_eval_loader(records, H, W, batch_size=3, workers=0))
    torch.testing.assert_close(torch.cat([b[0] for b in loaded]), expected)
    assert torch.cat([b[1] for b in loaded]).tolist() == [0, 1, 2, 3, 4]


def _batch(b: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def test_augment_is_deterministic_given_the_generator() -> None:
    augment = TrainAugment(H, W)
    images = _batch()
    first = augment(images, generator=torch.Generator().manual_seed(5))
    again = augment(images, generator=torch.Generator().manual_seed(5))
    other = augment(images, generator=torch.Generator().manual_seed(6))
    assert first.shape == (6, 3, H, W) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_flip_only_mirrors_a_handmade_image() -> None:
    image = torch.zeros(1, 3, H, W, dtype=torch.uint8)
    image[0, :, :, 0] = 255  # a white left column
    always = TrainAugment(H, W, flip_p=1.0, pad=0, erasing_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    never = TrainAugment(H, W, flip_p=0.0, pad=0, erasing_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    flipped = always(image, generator=torch.Generator().manual_seed(0))
    assert torch.equal(flipped, image.flip(-1).float() / 255)
    assert flipped[0, :, :, W - 1].eq(1).all() and flipped[0, :, :, :-1].eq(0).all()
    assert torch.equal(never(image, generator=torch.Generator().manual_seed(0)), image.float() / 255)


def test_pad_crop_matches_slicing_a_padded_image() -> None:
    images = _batch(3)
    offsets = torch.tensor([[0, 0], [20, 20], [7, 13]])
    out = pad_crop(images, 10, offsets)
    padded = torch.nn.functional.pad(images, (10, 10, 10, 10))
    for b, (top, left) in enumerate(offsets.tolist()):
        assert torch.equal(out[b], padded[b, :, top : top + H, left : left + W])


def _blank_edges(blank: torch.Tensor) -> torch.Tensor:
    """Signed shift of a crop from its blank borders: leading minus trailing all-zero lines, ``(B,)``."""
    leading = blank.long().cumprod(dim=1).sum(1)
    trailing = blank.flip(1).long().cumprod(dim=1).sum(1)
    return leading - trailing


def test_crop_offsets_cover_the_full_range() -> None:
    # A white image cropped from its zero-padded version shows the crop position as blank borders.
    height, width, pad = 12, 24, 4
    augment = TrainAugment(height, width, flip_p=0.0, pad=pad, erasing_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    images = torch.full((300, 3, height, width), 255, dtype=torch.uint8)
    out = augment(images, generator=torch.Generator().manual_seed(1))[:, 0]
    assert set(out.unique().tolist()) == {0.0, 1.0}
    row_shift = _blank_edges(out.eq(0).all(dim=2))
    col_shift = _blank_edges(out.eq(0).all(dim=1))
    assert set(row_shift.tolist()) == set(range(-pad, pad + 1))
    assert set(col_shift.tolist()) == set(range(-pad, pad + 1))
    # Only the border is blank: the white area has the full (height - |shift|) x (width - |shift|) size.
    white = out.eq(1).sum(dim=(1, 2))
    assert torch.equal(white, (height - row_shift.abs()) * (width - col_shift.abs()))


def test_erasing_boxes_follow_the_spcl_rules() -> None:
    g = torch.Generator().manual_seed(2)
    b, attempts = 2000, 10
    height, width = 64, 32
    boxes = erasing_boxes(
        height,
        width,
        torch.rand(b, attempts, generator=g),
        torch.rand(b, attempts, generator=g),
        torch.rand(b, 2, generator=g),
        torch.rand(b, generator=g) < 0.5,
    )
    top, left, h, w = boxes.unbind(1)
    erased = h > 0
    assert 0.4 < erased.float().mean() < 0.6
    area = (h * w)[erased].float() / (height * width)
    assert area.min() > 0.015 and area.max() < 0.43
    assert (h[erased] < height).all() and (w[erased] < width).all()
    assert (top + h <= height).all() and (left + w <= width).all() and (top >= 0).all() and (left >= 0).all()
    assert torch.equal(h == 0, w == 0)


def test_augment_erases_a_rectangle_with_the_authors_fill() -> None:
    height, width = 32, 16
    augment = TrainAugment(height, width, flip_p=0.0, pad=0, erasing_p=1.0, mean=(0.5, 0.5, 0.5), std=(1, 1, 1))
    images = torch.full((50, 3, height, width), 255, dtype=torch.uint8)
    out = augment(images, generator=torch.Generator().manual_seed(4))
    # Outside the box: (1 - 0.5) / 1 = 0.5; inside: SpCL's numbers 0.485 / 0.456 / 0.406, one a channel.
    erased = out.ne(0.5)
    assert torch.equal(erased, erased[:, :1].expand_as(erased))
    for c, value in enumerate(IMAGENET_MEAN):
        assert out[:, c][erased[:, c]].eq(value).all()
    erased = erased[:, 0]
    counts = erased.sum(dim=(1, 2)).float() / (height * width)
    assert (counts > 0.015).all() and (counts < 0.43).all()
    rows, cols = erased.any(dim=2).sum(1), erased.any(dim=1).sum(1)
    assert torch.equal(erased.sum(dim=(1, 2)), rows * cols)  # a filled rectangle


def _reference_train(
    path: str, height: int, width: int, pad: int, flip: bool, top: int, left: int, box: list[int]
) -> torch.Tensor:
    """SpCL's training transform written with torchvision's functional ops, replaying the given choices."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    with Image.open(path) as img:
        x = TF.resize(img.convert("RGB"), [height, width], interpolation=InterpolationMode.BICUBIC)
    if flip:
        x = TF.hflip(x)
    x = TF.crop(TF.pad(x, pad), top, left, height, width)
    x = TF.normalize(TF.to_tensor(x), IMAGENET_MEAN, IMAGENET_STD)
    y, z, h, w = box
    for c in range(3):  # SpCL's RandomErasing writes the mean values into the normalised tensor
        x[c, y : y + h, z : z + w] = IMAGENET_MEAN[c]
    return x


def _reference_test(path: str, height: int, width: int) -> torch.Tensor:
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    with Image.open(path) as img:
        x = TF.resize(img.convert("RGB"), [height, width], interpolation=InterpolationMode.BICUBIC)
    return TF.normalize(TF.to_tensor(x), IMAGENET_MEAN, IMAGENET_STD)


def test_train_and_test_tensors_match_a_torchvision_reference(tmp_path) -> None:
    height, width, pad = 64, 32, 5
    records = _write_jpegs(tmp_path, 8)  # 32 x 16 files: the resize enlarges them
    images = load_images(records, height, width)
    augment = TrainAugment(height, width, pad=pad)
    draws = augment.draw(len(records), torch.Generator().manual_seed(11), torch.device("cpu"))
    out = augment.apply(images, draws)
    # Both branches of flip and erasing occur among the 8 draws of this seed.
    assert 0 < int(draws.flip.sum()) < 8 and 0 < int((draws.boxes[:, 2] > 0).sum()) < 8
    for i, record in enumerate(records):
        top, left = draws.offsets[i].tolist()
        ref = _reference_train(record[0], height, width, pad, bool(draws.flip[i]), top, left, draws.boxes[i].tolist())
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-6)
    tests = normalize(images)
    loaded = torch.cat([b[0] for b in make_eval_loader(records, height, width, batch_size=4, workers=0)])
    for i, record in enumerate(records):
        ref = _reference_test(record[0], height, width)
        torch.testing.assert_close(tests[i], ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(loaded[i], ref, rtol=0, atol=1e-6)


def test_erase_fills_exactly_the_box() -> None:
    images = torch.ones(2, 3, 6, 5)
    out = erase(images, torch.tensor([[1, 2, 3, 2], [0, 0, 0, 0]]), value=0.0)
    expected = torch.ones(2, 3, 6, 5)
    expected[0, :, 1:4, 2:4] = 0
    assert torch.equal(out, expected)
    per_channel = erase(images, torch.tensor([[1, 2, 3, 2], [0, 0, 0, 0]]), value=torch.tensor([2.0, 3.0, 4.0]))
    for c, value in enumerate((2.0, 3.0, 4.0)):
        expected[0, c, 1:4, 2:4] = value
    assert torch.equal(per_channel, expected)


def test_augment_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="load_images"):
        TrainAugment(H, W)(torch.zeros(2, 3, H + 1, W, dtype=torch.uint8), generator=torch.Generator())
