"""Images into tensors: decoding, transforms (batched on the device for training) and the multi-gallery sampler."""

from spal.data.samplers import MultiGallerySampler, global_batches, max_repeats_in_batch
from spal.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFileDataset,
    ImageLoadError,
    TrainAugment,
    decode_image,
    iterate_tensor_batches,
    load_images,
    make_eval_loader,
    normalize,
    verify_images,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFileDataset",
    "ImageLoadError",
    "MultiGallerySampler",
    "TrainAugment",
    "decode_image",
    "global_batches",
    "iterate_tensor_batches",
    "load_images",
    "make_eval_loader",
    "max_repeats_in_batch",
    "normalize",
    "verify_images",
]
