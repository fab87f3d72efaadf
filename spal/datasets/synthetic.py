"""A synthetic person re-identification data set, written in the real Market-1501 or MSMT17_V1 layout.

Every identity is a drawn figure with its own clothing (upper / lower colours, a pattern with its own
frequency, sleeves, shorts), body proportions and maybe a bag or a chest print; every camera has its own
background, colour cast, brightness, contrast, blur, framing and a preferred viewing direction (front or back,
which hides or shows the print and the backpack and mirrors the side a hand bag hangs on). Each identity's
images are grouped in sightings (one per camera it passes), which share framing and lighting, and every image
adds its own pose, position, occlusion and sensor noise. Clothing colours come from a small palette and about
half of the identities copy a garment (or both garment colours) of an earlier one, so look-alikes exist and
clustering errs. Hence: same-camera images of one identity are more alike than cross-camera ones, and both
more than two identities (``tests/datasets/test_datasets_synthetic.py`` measures it on raw pixels; at the
default sizes a nearest-neighbour search on 8 x 4 pixel vectors finds a cross-camera match of the same
identity for about 60 % of the queries).

The output is a pure function of the arguments: the same arguments give byte-identical files wherever they are
written (fixed JPEG quality, no metadata, no paths or times in any file). A tree is generated in a hidden
sibling folder and renamed into place at the end, so a tree that exists is complete.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from spal.datasets import market1501, msmt17

__all__ = [
    "DEFAULTS",
    "JPEG_QUALITY",
    "LAYOUTS",
    "Appearance",
    "Camera",
    "Sighting",
    "ensure",
    "generate",
    "render",
]

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = (market1501.NAME, msmt17.NAME)

#: Default sizes, per layout: small enough to generate in a few seconds and to train on a CPU.
DEFAULTS: dict[str, dict[str, int]] = {
    market1501.NAME: {
        "num_ids": 64,
        "num_cams": 4,
        "images_per_id": 16,
        "height": 128,
        "width": 64,
        "seed": 0,
    },
    msmt17.NAME: {"num_ids": 64, "num_cams": 6, "images_per_id": 16, "height": 128, "width": 64, "seed": 0},
}
JPEG_QUALITY = 90

# Shares of the test images added to the Market-1501 gallery as distractors (pid 0000) and junk (pid -1);
# the real set has about 18 % distractors among the kept gallery images and 19 % junk among its files.
_DISTRACTOR_SHARE = 0.15
_JUNK_SHARE = 0.2
# Share of the training identities listed in MSMT17's list_val.txt.
_VAL_SHARE = 0.1
# Share of identities that copy one garment of an earlier identity (deliberate look-alikes).
_LOOKALIKE_SHARE = 0.5

# Clothing colours (RGB in [0, 1]): black, white, grey, navy, blue, light blue, red, green, yellow, pink,
# brown, beige, purple, orange, khaki. Trousers favour the dark and denim ones, as in street scenes.
_PALETTE = np.array(
    [
        [0.10, 0.10, 0.11],
        [0.90, 0.90, 0.88],
        [0.50, 0.50, 0.52],
        [0.12, 0.15, 0.35],
        [0.20, 0.35, 0.70],
        [0.55, 0.70, 0.85],
        [0.75, 0.12, 0.12],
        [0.20, 0.50, 0.25],
        [0.90, 0.80, 0.20],
        [0.90, 0.55, 0.65],
        [0.45, 0.30, 0.18],
        [0.80, 0.72, 0.55],
        [0.45, 0.25, 0.55],
        [0.90, 0.50, 0.15],
        [0.55, 0.55, 0.35],
    ]
)
_UPPER_WEIGHTS = np.full(len(_PALETTE), 1.0 / len(_PALETTE))
_LOWER_WEIGHTS = np.array([6, 1, 3, 4, 4, 1, 0.5, 0.5, 0.2, 0.3, 1.5, 1.5, 0.3, 0.2, 2.0])
_LOWER_WEIGHTS = _LOWER_WEIGHTS / _LOWER_WEIGHTS.sum()
_SKIN = np.array([1.0, 0.78, 0.64])

# Independent random streams, so that adding draws to one part does not shift another.
_STREAM_IDENTITIES, _STREAM_CAMERAS, _STREAM_PLAN, _STREAM_EXTRAS, _STREAM_IMAGES = range(5)

# MSMT17 file names carry a date and a time of day.
_MSMT_TIMES = ("morning", "noon", "afternoon")


@dataclass(frozen=True)
class Appearance:
    """What one person looks like, independent of the camera. Colours are RGB in [0, 1], shape ``(3,)``."""

    upper: np.ndarray
    upper_alt: np.ndarray  # second colour of the pattern
    pattern: int  # 0 plain, 1 horizontal stripes, 2 vertical stripes, 3 checks
    frequency: float  # pattern cycles per figure height
    short_sleeves: bool
    lower: np.ndarray
    shorts: bool
    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    height: float  # figure height as a share of the frame height, before camera and pose scaling
    shoulders: float  # shoulder width / figure height
    leg_ratio: float  # leg length / figure height
    bag: int  # 0 none, 1 hand bag (seen from both sides), 2 backpack (seen from behind, straps from the front)
    bag_colour: np.ndarray
    bag_side: int  # -1 left, +1 right, as seen from the front
    logo: np.ndarray | None  # chest print colour, seen from the front only


@dataclass(frozen=True)
class Camera:
    """One camera's rendering style."""

    gain: np.ndarray  # (3,) colour cast, multiplies RGB
    brightness: float  # added after the contrast change
    contrast: float  # scales around mid-grey
    blur: float  # Gaussian sigma in pixels of a 128-pixel-high frame
    wall: np.ndarray  # (3,) background colour
    floor: np.ndarray  # (3,) ground colour
    horizon: float  # where the ground starts, share of the frame height
    clutter: np.ndarray  # (3,) colour of the background structure (poles, windows)
    clutter_frequency: float  # structures per frame width
    clutter_strength: float  # 0 .. 1 blend of the clutter colour
    scale: float  # figure scale
    offset: float  # vertical figure offset, share of the frame height
    noise: float  # sensor noise standard deviation
    front_rate: float  # probability that a sighting shows the person from the front


@dataclass(frozen=True)
class Sighting:
    """What the images of one person in one camera share: viewing direction, framing, light, place."""

    front: bool
    dx: float  # horizontal figure offset, share of the frame width
    dy: float  # vertical figure offset, share of the frame height
    scale: float
    light: float  # brightness offset
    pan: float  # phase of the background structure


@dataclass(frozen=True)
class _Image:
    """One file to write: where, who (None = background only) and how."""

    path: str  # relative to the data set folder
    appearance: Appearance | None
    camera: int
    sighting: Sighting


def _colour(rng: np.random.Generator, weights: np.ndarray, spread: float = 0.05) -> np.ndarray:
    """A palette colour with a small per-person variation, ``(3,)`` in [0, 1]."""
    base = _PALETTE[rng.choice(len(_PALETTE), p=weights)]
    return np.clip(base + rng.normal(0.0, spread, 3), 0.0, 1.0)


def _random_appearance(rng: np.random.Generator, lookalike_of: Appearance | None = None) -> Appearance:
    """Draw a person; with ``lookalike_of``, copy its upper garment, its lower one, or the colours of both
    (keeping this person's own pattern, sleeves, build and bag); the choice is drawn.

    The same number of draws is made either way, so the stream stays aligned.
    """
    upper, upper_alt, lower = (
        _colour(rng, _UPPER_WEIGHTS),
        _colour(rng, _UPPER_WEIGHTS),
        _colour(rng, _LOWER_WEIGHTS),
    )
    pattern = int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15]))
    frequency = float(rng.uniform(7.0, 16.0))
    short_sleeves, shorts = bool(rng.random() < 0.4), bool(rng.random() < 0.2)
    skin = np.clip(_SKIN * rng.uniform(0.45, 0.95) + rng.normal(0.0, 0.02, 3), 0.0, 1.0)
    hair = np.clip(np.array([0.12, 0.09, 0.07]) * rng.uniform(0.6, 3.5), 0.0, 1.0)
    shoes = _colour(rng, _LOWER_WEIGHTS, 0.03)
    height = float(rng.uniform(0.8, 0.92))
    shoulders = float(rng.uniform(0.22, 0.32))
    leg_ratio = float(rng.uniform(0.42, 0.52))
    bag = int(rng.choice(3, p=[0.5, 0.25, 0.25]))
    bag_colour = _colour(rng, _LOWER_WEIGHTS)
    bag_side = int(rng.choice([-1, 1]))
    logo_colour = _colour(rng, _UPPER_WEIGHTS)
    has_logo = bool(rng.random() < 0.3)
    copied = int(rng.choice(3, p=[0.4, 0.3, 0.3]))  # upper, lower, both colours
    person = Appearance(
        upper=upper,
        upper_alt=upper_alt,
        pattern=pattern,
        frequency=frequency,
        short_sleeves=short_sleeves,
        lower=lower,
        shorts=shorts,
        skin=skin,
        hair=hair,
        shoes=shoes,
        height=height,
        shoulders=shoulders,
        leg_ratio=leg_ratio,
        bag=bag,
        bag_colour=bag_colour,
        bag_side=bag_side,
        logo=logo_colour if has_logo else None,
    )
    if lookalike_of is None:
        return person
    if copied == 0:
        return replace(
            person,
            upper=lookalike_of.upper,
            upper_alt=lookalike_of.upper_alt,
            pattern=lookalike_of.pattern,
            frequency=lookalike_of.frequency,
        )
    if copied == 1:
        return replace(person, lower=lookalike_of.lower, shorts=lookalike_of.shorts)
    return replace(person, upper=lookalike_of.upper, lower=lookalike_of.lower)


def _random_appearances(rng: np.random.Generator, count: int, lookalike_share: float) -> list[Appearance]:
    """``count`` people; about ``lookalike_share`` of them copy a garment of an earlier one."""
    people: list[Appearance] = []
    for index in range(count):
        lookalike = rng.random() < lookalike_share
        parent = int(rng.integers(0, max(index, 1)))
        people.append(_random_appearance(rng, people[parent] if lookalike and index > 0 else None))
    return people


def _random_camera(rng: np.random.Generator) -> Camera:
    """Draw one camera's style."""
    # Mid-grey, tinted scenes: how dark or bright a camera is comes from its response (brightness, contrast,
    # gain), which changes the person too, so the figure's contrast with its background keeps its sign.
    wall = np.clip(rng.uniform(0.4, 0.6) + rng.normal(0.0, 0.04, 3), 0.0, 1.0)
    return Camera(
        gain=np.clip(1.0 + rng.normal(0.0, 0.12, 3), 0.75, 1.25),
        brightness=float(rng.uniform(-0.1, 0.1)),
        contrast=float(rng.uniform(0.75, 1.15)),
        blur=float(rng.uniform(0.4, 1.6)),
        wall=wall,
        floor=np.clip(wall * rng.uniform(0.7, 0.95) + rng.normal(0.0, 0.04, 3), 0.0, 1.0),
        horizon=float(rng.uniform(0.65, 0.85)),
        clutter=np.clip(rng.uniform(0.1, 0.9, 3), 0.0, 1.0),
        clutter_frequency=float(rng.uniform(0.8, 3.0)),
        clutter_strength=float(rng.uniform(0.1, 0.35)),
        scale=float(rng.uniform(0.88, 1.06)),
        offset=float(rng.uniform(-0.03, 0.03)),
        noise=float(rng.uniform(0.01, 0.035)),
        front_rate=float(rng.uniform(0.2, 0.8)),
    )


def _random_sighting(rng: np.random.Generator, camera: Camera) -> Sighting:
    """Draw one person's pass through one camera."""
    return Sighting(
        front=bool(rng.random() < camera.front_rate),
        dx=float(rng.normal(0.0, 0.05)),
        dy=float(rng.normal(0.0, 0.015)),
        scale=float(rng.normal(1.0, 0.04)),
        light=float(rng.normal(0.0, 0.06)),
        pan=float(rng.random()),
    )


def _partial_sighting(rng: np.random.Generator, camera: Camera) -> Sighting:
    """A badly framed detection (distractor, junk): the figure too large and cut, or small and off-centre."""
    base = _random_sighting(rng, camera)
    if rng.random() < 0.5:
        return replace(base, scale=float(rng.uniform(1.4, 2.0)), dy=float(rng.choice([-0.45, 0.45])))
    return replace(base, scale=float(rng.uniform(0.35, 0.6)), dx=float(rng.uniform(-0.3, 0.3)))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, std: float) -> np.ndarray:
    """``(height, width, 3)`` smooth noise: a 6 x 3 grid of normals (std ``std``), enlarged bilinearly."""
    # Encoded around 128 in uint8 so that PIL does the resizing (1/255 quantisation is far below ``std``).
    coarse = np.clip(np.round(128.0 + 255.0 * rng.normal(0.0, std, (6, 3, 3))), 0, 255).astype(np.uint8)
    smooth = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BILINEAR)
    return (np.asarray(smooth, dtype=np.float64) - 128.0) / 255.0


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (clipped) to uint8, same shape."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Set the ``(H, W)`` ``mask`` pixels of the ``(H, W, 3)`` canvas to a ``(3,)`` or ``(H, W, 3)`` value."""
    canvas[mask] = colour[mask] if colour.ndim == 3 else colour


def render(
    appearance: Appearance | None,
    camera: Camera,
    sighting: Sighting,
    rng: np.random.Generator,
    height: int,
    width: int,
) -> np.ndarray:
    """Render one image.

    Args:
        appearance: the person, or ``None`` for background only.
        camera: the camera style; sighting: the framing and light shared with the person's other images in
            this camera; rng: draws this image's own pose, position, occlusion and noise.
        height, width: frame size in pixels.

    Returns:
        ``(height, width, 3)`` uint8 RGB image.
    """
    rows = (np.arange(height) + 0.5)[:, None]
    cols = (np.arange(width) + 0.5)[None, :]
    canvas = np.empty((height, width, 3))

    # Background: wall with vertical structures and shading, ground below the horizon, blotchy texture.
    structure = np.sin(2.0 * np.pi * (camera.clutter_frequency * cols / width + sighting.pan)) > 0.55
    wall = (
        np.where(
            structure[..., None],
            (1 - camera.clutter_strength) * camera.wall + camera.clutter_strength * camera.clutter,
            camera.wall,
        )
        * (0.9 + 0.2 * rows / height)[..., None]
    )
    canvas[:] = np.where((rows > camera.horizon * height)[..., None], camera.floor, wall)
    canvas += _smooth_noise(rng, height, width, 0.06)

    # Per-image pose: position and size jitter, walking stride.
    jitter = rng.normal(0.0, 1.0, 3)
    stride = float(np.sin(2.0 * np.pi * rng.random()))
    if appearance is not None:
        _draw_person(canvas, appearance, camera, sighting, jitter, stride, rows, cols)

    # Occasional occluder in the foreground (another pedestrian, a sign).
    if rng.random() < 0.15:
        top, left = rng.uniform(0.4, 0.8) * height, rng.uniform(-0.3, 0.7) * width
        box = (rows > top) & (cols > left) & (cols < left + rng.uniform(0.25, 0.5) * width)
        _paint(canvas, box, rng.uniform(0.1, 0.9, 3))

    # Camera response: contrast, brightness, colour cast, optics, sensor noise.
    canvas = (canvas - 0.5) * camera.contrast + 0.5 + camera.brightness + sighting.light
    canvas = _to_uint8(canvas * camera.gain)
    sigma = camera.blur * height / 128.0
    if sigma >= 0.3:
        canvas = np.asarray(Image.fromarray(canvas, "RGB").filter(ImageFilter.GaussianBlur(sigma)))
    return _to_uint8(canvas / 255.0 + rng.normal(0.0, camera.noise, canvas.shape))


def _draw_person(
    canvas: np.ndarray,
    person: Appearance,
    camera: Camera,
    sighting: Sighting,
    jitter: np.ndarray,
    stride: float,
    rows: np.ndarray,
    cols: np.ndarray,
) -> None:
    """Paint ``person`` onto the ``(H, W, 3)`` canvas; ``rows`` ``(H, 1)`` and ``cols`` ``(1, W)`` are pixel
    centres, ``jitter`` ``(3,)`` standard normals (x, y, scale), ``stride`` in [-1, 1]."""
    height, width = canvas.shape[:2]
    unit = person.height * camera.scale * sighting.scale * (1.0 + 0.04 * jitter[2]) * height
    cx = width * (0.5 + sighting.dx + 0.05 * jitter[0])
    bottom = height * (0.5 + camera.offset + sighting.dy + 0.015 * jitter[1]) + unit / 2
    top = bottom - unit
    hip = bottom - person.leg_ratio * unit
    shoulder_y = top + 0.13 * unit
    half_shoulders = 0.5 * person.shoulders * unit
    # Figure coordinates: in figure heights, origin at the top centre.
    fx, fy = (cols - cx) / unit, (rows - top) / unit
    side = person.bag_side if sighting.front else -person.bag_side

    legs = np.zeros(canvas.shape[:2], bool)
    for sign in (-1, 1):
        leg_centre = cx + sign * (0.045 + 0.05 * stride * np.clip((rows - hip) / (bottom - hip), 0, 1)) * unit
        legs |= (np.abs(cols - leg_centre) <= 0.045 * unit) & (rows >= hip - 0.02 * unit) & (rows <= bottom)
    _paint(canvas, legs, person.lower)
    if person.shorts:
        _paint(canvas, legs & (rows > hip + 0.4 * (bottom - hip)), person.skin)
    _paint(canvas, legs & (rows > bottom - 0.035 * unit), person.shoes)

    taper = 1.0 - 0.15 * np.clip((rows - shoulder_y) / (hip - shoulder_y), 0, 1)
    torso = (rows >= shoulder_y) & (rows < hip) & (np.abs(cols - cx) <= half_shoulders * taper)
    phase_y, phase_x = np.sin(2 * np.pi * person.frequency * fy), np.sin(2 * np.pi * person.frequency * fx)
    stripes_y, stripes_x = np.broadcast_arrays(phase_y > 0, phase_x > 0)
    alternate = (np.zeros_like(torso), stripes_y, stripes_x, stripes_y ^ stripes_x)[person.pattern]
    _paint(canvas, torso, np.where(alternate[..., None], person.upper_alt, person.upper))
    if sighting.front and person.logo is not None:
        _paint(canvas, torso & (np.abs(fx) < 0.06) & (fy > 0.2) & (fy < 0.28), person.logo)
    if person.bag == 2:
        if sighting.front:
            straps = torso & (np.abs(np.abs(fx) - 0.08) < 0.012)
            _paint(canvas, straps, 0.5 * person.bag_colour)
        else:
            _paint(canvas, (np.abs(fx) < 0.11) & (fy > 0.16) & (fy < 0.42), person.bag_colour)

    sleeve_end = shoulder_y + (0.12 if person.short_sleeves else 0.34) * unit
    for sign in (-1, 1):
        arm_x = cx + sign * (half_shoulders + 0.028 * unit)
        arm = (np.abs(cols - arm_x) <= 0.028 * unit) & (rows >= shoulder_y + 0.01 * unit) & (rows <= hip + 0.06 * unit)
        _paint(canvas, arm, person.skin)
        _paint(canvas, arm & (rows < sleeve_end), person.upper)

    if person.bag == 1:
        inner = cx + side * (half_shoulders + 0.05 * unit)
        bag_x = (cols - inner) * side
        bag = (bag_x >= 0) & (bag_x <= 0.1 * unit) & (rows >= hip - 0.05 * unit) & (rows <= hip + 0.12 * unit)
        _paint(canvas, bag, person.bag_colour)

    head = (fx / 0.06) ** 2 + ((fy - 0.07) / 0.07) ** 2 <= 1.0
    _paint(canvas, head, person.skin)
    _paint(canvas, head & (fy < (0.055 if sighting.front else 0.12)), person.hair)


def _split_cameras(rng: np.random.Generator, images: int, num_cams: int, first: tuple[int, int]) -> np.ndarray:
    """How many of one identity's ``images`` each camera takes: ``(num_cams,)`` ints summing to ``images``.

    At least two cameras (``first`` among them, which spreads identities over all cameras) get at least one.
    """
    count = int(rng.integers(2, min(num_cams, images) + 1))
    others = [c for c in rng.permutation(num_cams).tolist() if c not in first]
    cameras = list(first) + others[: count - 2]
    per_camera = np.zeros(num_cams, np.int64)
    per_camera[cameras] = 1 + rng.multinomial(images - count, rng.dirichlet(np.full(count, 2.0)))
    return per_camera


def _choose_queries(rng: np.random.Generator, per_camera: np.ndarray) -> list[int]:
    """Cameras that give one query image each, so that every query keeps a gallery image of the same identity
    in another camera.

    A camera with two or more images may give one (each with probability 1/2, at least one camera); then every
    used camera keeps a gallery image and at least two cameras are used. If no camera has two, a single
    camera gives its image and the others stay in the gallery.
    """
    used = np.flatnonzero(per_camera > 0)
    eligible = np.flatnonzero(per_camera > 1)
    if eligible.size == 0:
        return [int(rng.choice(used))]
    chosen = [int(c) for c in eligible if rng.random() < 0.5]
    return chosen or [int(rng.choice(eligible))]


def _validate(
    layout: str, num_ids: int, num_train_ids: int, num_cams: int, images_per_id: int, height: int, width: int
) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    max_cams = 9 if layout == market1501.NAME else 99  # one digit in Market-1501 names, two in MSMT17's
    problems = []
    if not 4 <= num_ids <= 9999:
        problems.append(f"num_ids must be in 4..9999, got {num_ids}")
    if not 2 <= num_train_ids <= num_ids - 2:
        problems.append(
            f"num_train_ids must leave at least 2 of the {num_ids} identities on each side, got {num_train_ids}"
        )
    if not 2 <= num_cams <= max_cams:
        problems.append(f"num_cams must be in 2..{max_cams} for the {layout} layout, got {num_cams}")
    if images_per_id < 2:
        problems.append(f"images_per_id must be at least 2 (two cameras per identity), got {images_per_id}")
    if height < 16 or width < 8:
        problems.append(f"images must be at least 16 x 8 pixels, got {height} x {width}")
    if problems:
        raise ValueError("; ".join(problems))


def _identity_images(
    rng: np.random.Generator, images: int, cameras: list[Camera], first: tuple[int, int]
) -> list[tuple[int, Sighting, int]]:
    """One identity's images as ``(camera, sighting, index within the camera)``, ordered by camera."""
    per_camera = _split_cameras(rng, images, len(cameras), first)
    out = []
    for camera in np.flatnonzero(per_camera).tolist():
        sighting = _random_sighting(rng, cameras[camera])
        out.extend((camera, sighting, j) for j in range(int(per_camera[camera])))
    return out


def _plan_market(
    seed: int, num_ids: int, num_train: int, images_per_id: int, people: list[Appearance], cameras: list[Camera]
) -> list[_Image]:
    """The files of a Market-1501 tree (paths relative to the data set folder)."""
    rng = np.random.default_rng([seed, _STREAM_PLAN])
    num_cams = len(cameras)
    # Sparse pids with gaps, train and test interleaved, as in the real set (train pids get relabelled).
    pids = np.sort(rng.choice(np.arange(1, min(9999, 2 * num_ids) + 1), num_ids, replace=False))
    is_train = np.zeros(num_ids, bool)
    is_train[rng.permutation(num_ids)[:num_train]] = True
    folders = market1501.FOLDERS
    files: list[_Image] = []
    split_rank = {True: 0, False: 0}  # rank of the identity within its split, to spread cameras
    for person, pid, train in zip(people, pids.tolist(), is_train.tolist()):
        rank = split_rank[train]
        split_rank[train] += 1
        images = _identity_images(rng, images_per_id, cameras, (2 * rank % num_cams, (2 * rank + 1) % num_cams))
        per_camera = np.bincount([c for c, _, _ in images], minlength=num_cams)
        query_cams = set() if train else set(_choose_queries(rng, per_camera))
        sequences = rng.integers(1, 7, num_cams)
        first_frames = rng.integers(0, 900000, num_cams)
        for camera, sighting, j in images:
            frame = int(first_frames[camera]) + 25 * j
            name = f"{pid:04d}_c{camera + 1}s{sequences[camera]}_{frame:06d}_{int(rng.integers(1, 9)):02d}.jpg"
            folder = folders["train"] if train else folders["query" if camera in query_cams and j == 0 else "gallery"]
            files.append(_Image(os.path.join(folder, name), person, camera, sighting))

    # Distractors (pid 0000, people of no test identity) and junk (pid -1, background or a sliver of someone),
    # both badly framed, in the gallery only.
    extras = np.random.default_rng([seed, _STREAM_EXTRAS])
    num_test_images = int((~is_train).sum()) * images_per_id
    strangers = _random_appearances(extras, max(1, round(_DISTRACTOR_SHARE * num_test_images)), 0.0)
    for k, person in enumerate(strangers):
        camera = int(extras.integers(num_cams))
        sequence, box = int(extras.integers(1, 7)), int(extras.integers(1, 9))
        name = f"0000_c{camera + 1}s{sequence}_{1000 + 37 * k:06d}_{box:02d}.jpg"
        sighting = _partial_sighting(extras, cameras[camera])
        files.append(_Image(os.path.join(folders["gallery"], name), person, camera, sighting))
    for k in range(max(1, round(_JUNK_SHARE * num_test_images))):
        camera = int(extras.integers(num_cams))
        sequence, box = int(extras.integers(1, 7)), int(extras.integers(1, 9))
        name = f"-1_c{camera + 1}s{sequence}_{1000 + 37 * k:06d}_{box:02d}.jpg"
        sighting = _partial_sighting(extras, cameras[camera])
        person = _random_appearance(extras)
        files.append(_Image(os.path.join(folders["gallery"], name), person if k % 2 else None, camera, sighting))
    return files


def _plan_msmt(
    seed: int, num_train: int, images_per_id: int, people: list[Appearance], cameras: list[Camera]
) -> tuple[list[_Image], dict[str, list[str]]]:
    """The files of an MSMT17_V1 tree and the lines of its list files (``{list file name: lines}``)."""
    rng = np.random.default_rng([seed, _STREAM_PLAN])
    num_cams = len(cameras)
    val_ids = set(rng.choice(num_train, max(1, round(_VAL_SHARE * num_train)), replace=False).tolist())
    files: list[_Image] = []
    lists: dict[str, list[str]] = {name: [] for names, _ in msmt17.LISTS.values() for name in names}
    for index, person in enumerate(people):
        train = index < num_train
        pid = index if train else index - num_train  # train and test labels both start at 0, as in MSMT17_V1
        images = _identity_images(rng, images_per_id, cameras, (2 * pid % num_cams, (2 * pid + 1) % num_cams))
        per_camera = np.bincount([c for c, _, _ in images], minlength=num_cams)
        query_cams = set() if train else set(_choose_queries(rng, per_camera))
        dates = rng.integers(1, 13, num_cams) * 100 + rng.integers(1, 29, num_cams)
        times = rng.integers(0, len(_MSMT_TIMES), num_cams)
        for number, (camera, sighting, j) in enumerate(images):
            when = f"{dates[camera]:04d}{_MSMT_TIMES[times[camera]]}"
            frame = int(rng.integers(10000))
            entry = f"{pid:04d}/{pid:04d}_{number:03d}_{camera + 1:02d}_{when}_{frame:04d}_0.jpg"
            if train:
                list_name = "list_val.txt" if pid in val_ids else "list_train.txt"
            else:
                list_name = "list_query.txt" if camera in query_cams and j == 0 else "list_gallery.txt"
            folder = "train" if train else "test"
            files.append(_Image(os.path.join(folder, entry), person, camera, sighting))
            lists[list_name].append(f"{entry} {pid}\n")
    return files, lists


def _render_file(job: tuple[int, _Image, Camera, Path, int, int, int]) -> None:
    """Render image ``index`` of the plan from its own random stream and write it under the staging folder."""
    index, image, camera, staging, seed, height, width = job
    rng = np.random.default_rng([seed, _STREAM_IMAGES, index])
    _write_jpeg(staging / image.path, render(image.appearance, camera, image.sighting, rng, height, width))


def _write_jpeg(path: Path, pixels: np.ndarray) -> None:
    """Save ``(H, W, 3)`` uint8 RGB as a baseline JPEG with fixed quality and no metadata."""
    Image.fromarray(pixels, "RGB").save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False)


def _dataset_folder(out: Path, layout: str) -> Path:
    return out / (market1501.RELATIVE_DIR if layout == market1501.NAME else msmt17.RELATIVE_DIR)


def generate(
    out: str | os.PathLike[str],
    layout: str = market1501.NAME,
    num_ids: int = DEFAULTS[market1501.NAME]["num_ids"],
    num_cams: int | None = None,
    images_per_id: int = DEFAULTS[market1501.NAME]["images_per_id"],
    height: int = DEFAULTS[market1501.NAME]["height"],
    width: int = DEFAULTS[market1501.NAME]["width"],
    seed: int = DEFAULTS[market1501.NAME]["seed"],
    workers: int = 0,
    num_train_ids: int | None = None,
) -> Path:
    """Write a synthetic data set in the real on-disk layout of ``layout`` under ``out``.

    Args:
        out: the data-dir to write into (created if needed); the tree goes to
            ``out/market1501/Market-1501-v15.09.15/`` or ``out/msmt17/MSMT17_V1/``.
        layout: ``"market1501"`` or ``"msmt17"``.
        num_ids: identities in all: ``num_train_ids`` train, the rest test (query + gallery), disjoint.
        num_cams: cameras; ``None`` = the layout's default (``DEFAULTS[layout]["num_cams"]``).
        images_per_id: images of every identity, spread over at least two of its cameras. Test identities give
            one query image from some of their cameras; every query keeps a same-identity gallery image from
            another camera. The Market-1501 gallery also gets distractors (pid 0000, about 15 % of the test
            images) and junk (pid -1, about 20 %); MSMT17 train identities are split into list_train.txt and
            list_val.txt (about 10 %, at least one).
        height, width: image size in pixels.
        seed: everything drawn depends on it alone: equal arguments give byte-identical files.
        workers: processes rendering the images (0: this process). Every image draws from its own stream, so
            the files are the same for any number of workers.
        num_train_ids: training identities; ``None`` = ``ceil(num_ids / 2)``. A larger test split (more queries)
            makes the mAP of one trained model a steadier estimate without changing the training set's size.

    Returns:
        The absolute data-dir (``out``), as ``spal.datasets.create(layout, root)`` takes it.

    Raises:
        ValueError: an argument is out of range. FileExistsError: the tree already exists under ``out``.
    """
    num_cams = DEFAULTS[layout]["num_cams"] if num_cams is None and layout in DEFAULTS else num_cams
    num_train_ids = (num_ids + 1) // 2 if num_train_ids is None else num_train_ids
    _validate(layout, num_ids, num_train_ids, num_cams, images_per_id, height, width)
    root = Path(os.path.abspath(out))
    target = _dataset_folder(root, layout)
    if target.exists():
        raise FileExistsError(f"{target} already exists; delete it first or choose another output folder")

    cameras = [_random_camera(np.random.default_rng([seed, _STREAM_CAMERAS, c])) for c in range(num_cams)]
    people = _random_appearances(np.random.default_rng([seed, _STREAM_IDENTITIES]), num_ids, _LOOKALIKE_SHARE)
    lists: dict[str, list[str]] = {}
    if layout == market1501.NAME:
        files = _plan_market(seed, num_ids, num_train_ids, images_per_id, people, cameras)
    else:
        files, lists = _plan_msmt(seed, num_train_ids, images_per_id, people, cameras)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        folders = sorted({os.path.dirname(f.path) for f in files})
        for folder in folders:
            (staging / folder).mkdir(parents=True, exist_ok=True)
        jobs = [(i, image, cameras[image.camera], staging, seed, height, width) for i, image in enumerate(files)]
        progress = tqdm(total=len(files), desc=f"synthetic {layout}", unit="img", disable=None)
        if workers > 0:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_render_file, jobs, chunksize=64):
                    progress.update(1)
        else:
            for job in jobs:
                _render_file(job)
                progress.update(1)
        progress.close()
        for name, lines in lists.items():
            (staging / name).write_text("".join(sorted(lines)), encoding="utf-8")
        # The rename is atomic: the tree under its real name is always complete. It fails if another process
        # put a tree there meanwhile (two ranks generating at once, say).
        try:
            os.rename(staging, target)
        except OSError as error:
            if target.exists():
                raise FileExistsError(f"{target} was created by another process during generation") from error
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote a synthetic %s tree (%d images) to %s", layout, len(files), target)
    return root


def ensure(data_dir: str | os.PathLike[str], layout: str = market1501.NAME) -> Path:
    """Return the data-dir holding a ``layout`` tree, generating one with :data:`DEFAULTS` if it is absent.

    An existing tree (synthetic or real) at ``data_dir/market1501/Market-1501-v15.09.15`` (or
    ``data_dir/msmt17/MSMT17_V1``) is reused as it is. Safe when several processes call it at once: one
    generates, the others reuse its tree.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    root = Path(os.path.abspath(data_dir))
    target = _dataset_folder(root, layout)
    if target.is_dir():
        logger.info("using the %s tree at %s", layout, target)
        return root
    logger.info("no %s tree at %s: generating a synthetic one with the default sizes", layout, target)
    try:
        return generate(root, layout, **DEFAULTS[layout])
    except FileExistsError:
        logger.info("another process generated %s meanwhile; using it", target)
        return root
