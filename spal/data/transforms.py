"""Image decoding, the test transform and batched training augmentation on the device.

The training set is decoded once into a ``uint8`` tensor ``(N, 3, H, W)`` (on the GPU when it fits) and
every batch is augmented there in a few vectorised tensor operations, instead of a CPU DataLoader running PIL
per image (ARCHITECTURE.md, speed section). The augmentation follows SpCL's training transform, which the
authors' script uses (SPEC 2): bicubic resize (done at decoding, as ``T.Resize(..., interpolation=3)``), random
horizontal flip 0.5, zero padding 10 + random crop back to ``H x W``, normalisation with the ImageNet mean / std,
random erasing 0.5. Evaluation and the memory initialisation decode with the same bicubic resize.

Random erasing as SpCL's ``RandomErasing`` (Zhong et al., AAAI 2020): target area uniform in [0.02, 0.4] of
the image, aspect ratio uniform in [0.3, 1/0.3], ``h = round(sqrt(area * aspect))``,
``w = round(sqrt(area / aspect))``, accepted when ``h < H`` and ``w < W``, position uniform. SpCL retries up
to 100 times; we draw 10 candidates per image at once and take the first that fits (all 10 fail with
probability below 1e-5: then nothing is erased). The box is filled with the numbers (0.485, 0.456, 0.406), the
ImageNet mean *pixel* values, written into the already normalised tensor: that is what SpCL's transform does
(it erases after ``Normalize``), a light grey rather than the mean, and the paper's numbers were trained so.

For evaluation over sets too big to hold decoded, ``ImageFileDataset`` / ``make_eval_loader`` decode per
image in DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageLoadError",
    "decode_image",
    "load_images",
    "verify_images",
    "normalize",
    "AugmentDraws",
    "TrainAugment",
    "ImageFileDataset",
    "make_eval_loader",
    "iterate_tensor_batches",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Candidate boxes drawn per image for random erasing (see the module docstring).
_ERASE_ATTEMPTS = 10
_ERASE_AREA = (0.02, 0.4)
_ERASE_MIN_ASPECT = 0.3

RecordLike = str | os.PathLike | Sequence


class ImageLoadError(OSError):
    """An image file is missing, truncated or not an image; the message names the file."""


def _path_of(record: RecordLike) -> str:
    """A record is ``(path, pid, camid)`` (only the path is used) or a bare path."""
    if isinstance(record, (str, os.PathLike)):
        return os.fspath(record)
    return os.fspath(record[0])


def decode_image(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """Read one image as RGB, resized bicubically to ``height x width``: ``(height, width, 3)`` uint8 array.

    The resize is PIL's bicubic filter, which torchvision's ``Resize(interpolation=3)`` calls on PIL images.

    Raises:
        ImageLoadError: the file cannot be opened or decoded (the message names it).
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
            return np.array(rgb, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(
            f"cannot read image {os.fspath(path)} ({err.__class__.__name__}: {err}); "
            "replace the file or re-extract the data set"
        ) from err


def _verify_one(path: str) -> None:
    """Check that one file is a whole image: its header and structure (``verify``), then a full decode.

    JPEGs are decoded at 1/8 scale (``draft``): the whole compressed stream is still read, so a truncated
    file fails, at a fraction of the cost of a full-size decode.
    """
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.draft("RGB", (1, 1))
            img.load()
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(
            f"cannot read image {path} ({err.__class__.__name__}: {err}); replace the file or re-extract the data set"
        ) from err


def verify_images(
    records: Sequence[RecordLike], threads: int | None = None, desc: str = "check images", progress: bool = True
) -> None:
    """Check every record's image file before a run uses any: header and structure, then a full decode (JPEGs at
    1/8 scale, which still reads every byte of the compressed stream).

    Args:
        records: records ``(path, pid, camid)`` or paths.
        threads: checking threads (PIL releases the GIL while decoding); ``None``: one per CPU, at most 16.
        desc: tqdm progress-bar label; ``progress=False`` hides the bar.

    Raises:
        ImageLoadError: for the first unreadable file in record order (named in the message).
    """
    paths = [_path_of(r) for r in records]
    threads = threads or min(16, os.cpu_count() or 1)
    with (
        tqdm(total=len(paths), desc=desc, unit="img", leave=False, disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        try:
            for _ in pool.map(_verify_one, paths):
                bar.update(1)
        except BaseException:
            # Fail fast: report the bad file without checking the rest of a large set first.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def load_images(
    records: Sequence[RecordLike],
    height: int,
    width: int,
    workers: int = 0,
    desc: str = "decode images",
) -> torch.Tensor:
    """Decode every record's image into one tensor.

    Args:
        records: ``N`` records ``(path, pid, camid)`` or paths.
        height, width: output size of every image (bicubic resize).
        workers: decoding threads (PIL releases the GIL while decoding and resizing); 0 decodes in this
            thread.
        desc: tqdm progress-bar label.

    Returns:
        ``(N, 3, height, width)`` uint8 CPU tensor, in record order.

    Raises:
        ImageLoadError: an unreadable file (named in the message).
    """
    paths = [_path_of(r) for r in records]
    out = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    # Writing through a numpy view of ``out`` (N, H, W, C order per image) avoids a second full-size buffer.
    target = out.numpy()

    def decode_into(i: int) -> None:
        target[i] = decode_image(paths[i], height, width).transpose(2, 0, 1)

    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as progress:
        if workers > 0:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                try:
                    for _ in pool.map(decode_into, range(len(paths))):
                        progress.update(1)
                except BaseException:
                    # Fail fast: do not decode the rest of a large set before reporting the bad file.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        else:
            for i in range(len(paths)):
                decode_into(i)
                progress.update(1)
    return out


def _channel_tensor(values: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def normalize(
    images: torch.Tensor,
    mean: Sequence[float] | torch.Tensor = IMAGENET_MEAN,
    std: Sequence[float] | torch.Tensor = IMAGENET_STD,
) -> torch.Tensor:
    """The test transform of a decoded batch: ``(B, 3, H, W)`` uint8 -> float32 ``(x / 255 - mean) / std``.

    Runs on the device of ``images``.
    """
    return (images.float().div(255.0) - _channel_tensor(mean, images)) / _channel_tensor(std, images)


def _uniform(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 draws from ``generator`` (on its own device), moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _random_index(u: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """Map uniforms ``u`` in [0, 1) to integers uniform in ``[0, count)`` (``count`` broadcast to ``u``)."""
    # The clamp guards against float rounding of u * count up to count itself. An int bound stays a Python
    # number: turning it into a tensor on a CUDA device would be a blocking host-to-device copy every batch.
    return (u * count).long().clamp(max=count - 1)


@dataclass
class AugmentDraws:
    """The random choices of one augmented batch of ``B`` images (see :meth:`TrainAugment.draw`).

    Attributes:
        flip: ``(B,)`` bool, mirror the image left-right.
        offsets: ``(B, 2)`` long crop position (top, left) in the padded image, in ``[0, 2 * pad]``.
        boxes: ``(B, 4)`` long random-erasing box (top, left, h, w); ``h = w = 0`` erases nothing.
    """

    flip: torch.Tensor
    offsets: torch.Tensor
    boxes: torch.Tensor


class TrainAugment(nn.Module):
    """Batched training augmentation of decoded images, on their device (see the module docstring).

    ``augment(images, generator)``: ``images`` ``(B, 3, height, width)`` uint8 on any device; ``generator`` a
    ``torch.Generator`` that drives every random choice (deterministic for a given generator state and device;
    put it on the images' device to avoid host-device copies). Returns ``(B, 3, height, width)`` float32,
    normalised, on the images' device. It is ``apply(images, draw(B, generator, device))``: the random choices
    and their application are separate steps, so a reference pipeline can replay the same choices.

    Args:
        height, width: the decoded image size the input must have.
        flip_p: probability of a horizontal flip.
        pad: zero padding on every side before the random crop back to ``height x width``.
        erasing_p: probability of random erasing.
        mean, std: per-channel normalisation constants (ImageNet's by default).
        erasing_fill: per-channel values written into the erased box of the *normalised* tensor (SpCL's: the
            ImageNet mean pixel values, see the module docstring).
    """

    def __init__(
        self,
        height: int,
        width: int,
        flip_p: float = 0.5,
        pad: int = 10,
        erasing_p: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        erasing_fill: Sequence[float] = IMAGENET_MEAN,
    ) -> None:
        super().__init__()
        self.height, self.width = height, width
        self.flip_p, self.pad, self.erasing_p = flip_p, pad, erasing_p
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer(
            "erasing_fill", torch.tensor(erasing_fill, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def draw(self, batch_size: int, generator: torch.Generator, device: torch.device) -> AugmentDraws:
        """The random choices for ``batch_size`` images, from ``generator``, as tensors on ``device``."""
        b, a = batch_size, _ERASE_ATTEMPTS
        # One draw for the whole batch, split into named parts: the same generator state gives the same batch.
        u = _uniform(generator, (b, 6 + 2 * a), device)
        flip_u, crop_u, erase_u, pos_u = u[:, 0], u[:, 1:3], u[:, 3], u[:, 4:6]
        area_u, aspect_u = u[:, 6 : 6 + a], u[:, 6 + a :]
        return AugmentDraws(
            flip=flip_u < self.flip_p,
            offsets=_random_index(crop_u, 2 * self.pad + 1),
            boxes=erasing_boxes(self.height, self.width, area_u, aspect_u, pos_u, erase_u < self.erasing_p),
        )

    def apply(self, images: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        """Augment ``images`` ``(B, 3, height, width)`` uint8 with the choices ``draws``: float32, normalised."""
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[2:]) != (self.height, self.width):
            raise ValueError(
                f"expected a (B, 3, {self.height}, {self.width}) uint8 batch, got {tuple(images.shape)} "
                f"{images.dtype}: decode with load_images(..., height={self.height}, width={self.width})"
            )
        device = images.device
        x = flip_images(images, draws.flip)
        x = pad_crop(x, self.pad, draws.offsets)
        x = (x.float().div(255.0) - self.mean.to(device)) / self.std.to(device)
        return erase(x, draws.boxes, value=self.erasing_fill.to(device))

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.draw(images.shape[0], generator, images.device))


def flip_images(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror ``images`` ``(B, C, H, W)`` left-right where ``flip`` ``(B,)`` bool is True."""
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def pad_crop(images: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``images`` ``(B, C, H, W)`` by ``pad`` on every side and crop ``H x W`` at ``offsets``.

    ``offsets`` ``(B, 2)`` long holds each crop's (top, left) in the padded image, in ``[0, 2 * pad]``.
    Equals ``torchvision``'s ``Pad(pad)`` then ``RandomCrop((H, W))`` with those positions. Returns
    ``(B, C, H, W)``, same dtype.
    """
    b, c, h, w = images.shape
    if pad == 0:
        return images
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # (B, H) rows of the padded image
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # (B, W)
    picked_rows = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * pad))
    return picked_rows.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def erasing_boxes(
    height: int,
    width: int,
    area_u: torch.Tensor,
    aspect_u: torch.Tensor,
    pos_u: torch.Tensor,
    apply: torch.Tensor,
) -> torch.Tensor:
    """Draw SpCL-style random-erasing boxes from uniforms in [0, 1).

    Args:
        height, width: image size.
        area_u, aspect_u: ``(B, A)``: area fraction and aspect ratio of ``A`` candidate boxes per image.
        pos_u: ``(B, 2)``: position (top, left) of the chosen box.
        apply: ``(B,)`` bool, whether to erase each image at all.

    Returns:
        ``(B, 4)`` long boxes ``(top, left, h, w)``, the first fitting candidate; ``h = w = 0`` where nothing
        is erased (not applied, or no candidate fitted).
    """
    area = height * width * (_ERASE_AREA[0] + (_ERASE_AREA[1] - _ERASE_AREA[0]) * area_u)
    aspect = _ERASE_MIN_ASPECT + (1.0 / _ERASE_MIN_ASPECT - _ERASE_MIN_ASPECT) * aspect_u
    h = torch.round(torch.sqrt(area * aspect)).long()
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < height) & (w < width)
    first = fits.long().argmax(dim=1, keepdim=True)  # first fitting candidate (0 if none: masked below)
    ok = apply & fits.any(dim=1)
    h = torch.where(ok, h.gather(1, first).squeeze(1), 0)
    w = torch.where(ok, w.gather(1, first).squeeze(1), 0)
    top = _random_index(pos_u[:, 0], height - h + 1)
    left = _random_index(pos_u[:, 1], width - w + 1)
    return torch.stack((top, left, h, w), dim=1)


def erase(images: torch.Tensor, boxes: torch.Tensor, value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Fill each image's box ``(top, left, h, w)`` of ``boxes`` ``(B, 4)`` with ``value``.

    ``images`` ``(B, C, H, W)``; ``value`` a number for every channel, or a tensor broadcastable to
    ``(1, C, 1, 1)`` (one number a channel). Returns a new tensor of the same shape.
    """
    _, _, height, width = images.shape
    top, left, h, w = boxes.unbind(1)
    ys = torch.arange(height, device=images.device).view(1, -1)
    xs = torch.arange(width, device=images.device).view(1, -1)
    in_rows = (ys >= top.view(-1, 1)) & (ys < (top + h).view(-1, 1))  # (B, H)
    in_cols = (xs >= left.view(-1, 1)) & (xs < (left + w).view(-1, 1))  # (B, W)
    mask = in_rows.unsqueeze(2) & in_cols.unsqueeze(1)  # (B, H, W)
    fill = torch.as_tensor(value, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    return torch.where(mask.unsqueeze(1), fill, images)


class ImageFileDataset(Dataset):
    """Images decoded from files on access: item ``i`` is ``(image, i)``.

    ``image`` is the test transform of record ``i``'s file: ``(3, height, width)`` float32, normalised.
    Use with ``make_eval_loader`` for sets too big to decode into memory at once.
    """

    def __init__(self, records: Sequence[RecordLike], height: int, width: int) -> None:
        self.paths = [_path_of(r) for r in records]
        self.height, self.width = height, width

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        array = decode_image(self.paths[index], self.height, self.width)
        image = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
        return normalize(image).squeeze(0), index


def make_eval_loader(
    records: Sequence[RecordLike], height: int, width: int, batch_size: int, workers: int
) -> DataLoader:
    """A DataLoader over ``ImageFileDataset(records, ...)`` in record order: batches ``((b, 3, H, W), (b,))``.

    ``workers`` DataLoader processes decode the files; memory is pinned when CUDA is available.
    """
    return DataLoader(
        ImageFileDataset(records, height, width),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
    )


def iterate_tensor_batches(images: torch.Tensor, batch_size: int, device: torch.device | str) -> Iterator[torch.Tensor]:
    """Yield the test transform of ``images`` ``(N, 3, H, W)`` uint8 in order, ``batch_size`` at a time.

    Each yielded batch is ``(b, 3, H, W)`` float32 on ``device`` (the last may be shorter).
    """
    for start in range(0, images.shape[0], batch_size):
        yield normalize(images[start : start + batch_size].to(device, non_blocking=True))
