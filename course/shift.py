"""Shifted test sets: the pet photos corrupted as ImageNet-C corrupts ImageNet, for notebook 06 (which layers
to unfreeze when the test photos differ from the training ones) and ``benchmarks.which_layers``.

Hendrycks and Dietterich (ICLR 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations") fixed five severities for each corruption before measuring anything; ``SEVERITIES`` holds
their values for the five corruptions used here, on 224 px images:

- ``gaussian_noise``: noise of standard deviation c added to pixel values in [0, 1];
- ``gaussian_blur``: a Gaussian blur of standard deviation c pixels;
- ``jpeg``: JPEG compression at quality c;
- ``contrast``: pixel values pulled towards the image's mean, keeping the fraction c of their distance;
- ``brightness``: c added to the value channel in HSV, in [0, 1].

Everything is seeded (the noise of a photo depends on the seed and the photo's file name, never on the
order it is read in or the process that reads it) and cached: ``ShiftedImages`` writes each corrupted photo
once, as a lossless PNG, and reads it back after that.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .data import PetImages

if TYPE_CHECKING:
    from PIL import Image

SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "jpeg": (25, 18, 15, 10, 7),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
}
CORRUPTIONS = tuple(SEVERITIES)


def _check(kind: str, severity: int) -> float:
    """The corruption's parameter c; ValueError naming what is allowed."""
    if kind not in SEVERITIES:
        raise ValueError(f"unknown corruption {kind!r}: one of {', '.join(CORRUPTIONS)}")
    if not isinstance(severity, int) or isinstance(severity, bool) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int from 1 to 5, got {severity!r}")
    return SEVERITIES[kind][severity - 1]


def photo_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one photo from the run's ``seed`` and the photo's ``name`` (its file name): the same
    in every process and on every machine (Python's own ``hash`` of a string is not)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def corrupt(image: Image.Image, kind: str, severity: int, seed: int = 0) -> Image.Image:
    """``image`` (an RGB PIL image) corrupted by ``kind`` at ``severity`` (1 to 5); an RGB PIL image of the
    same size. ``seed`` draws the noise of ``gaussian_noise`` (the other corruptions draw nothing)."""
    from PIL import Image, ImageFilter

    c = _check(kind, severity)
    image = image.convert("RGB")
    if kind == "gaussian_blur":
        return image.filter(ImageFilter.GaussianBlur(radius=c))
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(c))
        with Image.open(io.BytesIO(buffer.getvalue())) as compressed:
            return compressed.convert("RGB")
    if kind == "brightness":
        h, s, v = image.convert("HSV").split()
        v = torch.frombuffer(bytearray(v.tobytes()), dtype=torch.uint8).float() / 255
        v = ((v + c).clamp(0, 1) * 255).round().to(torch.uint8)
        brighter = Image.frombytes("L", image.size, bytes(v.numpy()))
        return Image.merge("HSV", (h, s, brighter)).convert("RGB")
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).float().div(255)
    x = x.view(image.size[1], image.size[0], 3)
    if kind == "gaussian_noise":
        generator = torch.Generator().manual_seed(seed)
        x = x + c * torch.randn(x.shape, generator=generator)
    else:  # contrast
        mean = x.mean()
        x = (x - mean) * c + mean
    out = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.frombytes("RGB", image.size, bytes(out.numpy()))


def square(image: Image.Image, size: int) -> Image.Image:
    """The centre square of ``image`` after resizing its shorter side to ``size`` pixels, as the course's
    ``eval_transform`` crops it: the corruptions' severities are set for images of one size."""
    from torchvision.transforms import functional as TF

    return TF.center_crop(TF.resize(image, size), size)


class ShiftedImages(PetImages):
    """A corrupted copy of a ``course.data.PetImages`` split: (image, label) pairs, the same labels.

    Each photo is cropped to ``size`` by ``square``, corrupted by ``kind`` at ``severity`` with the noise
    seeded by ``photo_seed(seed, file name)``, and, when ``cache`` is a folder, written there once as a PNG
    and read back from then on (``cache / f"{kind}-{severity}-seed{seed}-{size}px" / f"{file stem}.png"``,
    written under a temporary name and renamed, so an interrupted run leaves no half-written photo).
    ``transform`` turns the PIL image into what the model takes (e.g. to a tensor and normalise; no resizing
    needed). A photo that cannot be decoded is skipped with a warning (``PetImages.__getitem__``).
    """

    def __init__(self, dataset: PetImages, kind: str, severity: int, size: int = 224, seed: int = 0,
                 cache: str | os.PathLike[str] | None = None,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        _check(kind, severity)
        super().__init__(dataset.files, dataset.labels, dataset.classes, transform)
        self.clean, self.kind, self.severity, self.size, self.seed = dataset, kind, severity, size, seed
        self.folder = (Path(cache) / f"{kind}-{severity}-seed{seed}-{size}px") if cache is not None else None

    def load(self, index: int) -> Image.Image:
        """Photo ``index`` corrupted (from the cache when it is there); OSError if it cannot be read."""
        from PIL import Image

        name = Path(self.files[index]).name
        cached = self.folder / f"{Path(name).stem}.png" if self.folder is not None else None
        if cached is not None and cached.is_file():
            with Image.open(cached) as img:
                return img.convert("RGB")
        out = corrupt(square(self.clean.load(index), self.size), self.kind, self.severity,
                      photo_seed(self.seed, name))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f".{cached.stem}.{os.getpid()}.partial.png")
            out.save(partial, format="PNG")
            partial.replace(cached)
        return out
