"""Images into tensors: decoding, transforms (batched on the device for training) and PK sampling."""

from spal.data.samplers import PKSampler
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
    "PKSampler",
    "TrainAugment",
    "decode_image",
    "iterate_tensor_batches",
    "load_images",
    "make_eval_loader",
    "normalize",
    "verify_images",
]
