"""The Oxford-IIIT Pet photos, through torchvision's ``OxfordIIITPet``, found by configuration.

Where the data is: the ``root`` argument, else the ``COURSE_DATA`` environment variable (a JupyterHub sets
it to a shared read-only folder), else ``~/.cache/freezing-course/pets``. A root holds
``oxford-iiit-pet/images`` and ``oxford-iiit-pet/annotations`` as torchvision lays them out.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .config import grading_mode

if TYPE_CHECKING:  # for the annotations only: torch and PIL are imported when they are used
    import torch
    from PIL import Image

DATA_ENV = "COURSE_DATA"
DEFAULT_ROOT = Path.home() / ".cache" / "freezing-course" / "pets"


class MissingData(RuntimeError):
    """The pet photos are not where the configuration says, and could not (or may not) be downloaded."""


def pets_root(root: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The data root as a Path: ``root``, else ``$COURSE_DATA``, else ``DEFAULT_ROOT``."""
    env = os.environ if environ is None else environ
    return Path(root or env.get(DATA_ENV) or DEFAULT_ROOT).expanduser()


def _present(root: str | Path) -> bool:
    base = Path(root) / "oxford-iiit-pet"
    return (base / "images").is_dir() and (base / "annotations" / "trainval.txt").is_file()


def _class_ids(root: str | Path) -> list[int]:
    """Sorted Oxford class ids (1..37) named in any split file under root."""
    ids = set()
    for split in ("trainval", "test"):
        path = Path(root) / "oxford-iiit-pet" / "annotations" / f"{split}.txt"
        if path.is_file():
            ids.update(int(line.split()[1]) for line in path.read_text().splitlines() if line.strip())
    return sorted(ids)


class PetImages:
    """A map-style dataset of (image, label) pairs with labels 0..k-1 for the k breeds present.

    Images are decoded with PIL and converted to RGB, whatever their real format (the real data has a GIF
    and a PNG with alpha named .jpg). A file that cannot be decoded is skipped with a warning: the next
    readable image stands in for it, so an epoch never stops halfway.

    Attributes:
        classes: breed names in label order, e.g. ``["Abyssinian", "American Bulldog", "Bengal"]``.
        files: image paths; labels: int labels, both in the split file's order.
    """

    def __init__(self, files: Iterable[str | Path], labels: Iterable[int], classes: Iterable[str],
                 transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        self.files, self.labels, self.classes = list(files), list(labels), list(classes)
        self.transform = transform
        self.bad = set()

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Image.Image:
        """The image at index as an RGB PIL image (raises OSError if it cannot be decoded)."""
        from PIL import Image

        with Image.open(self.files[index]) as img:
            return img.convert("RGB")

    def __getitem__(self, index: int) -> tuple[torch.Tensor | Image.Image, int]:
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if i in self.bad:
                continue
            try:
                img = self.load(i)
            except OSError as err:
                self.bad.add(i)
                warnings.warn(f"skipping unreadable image {self.files[i]}: {err}", RuntimeWarning,
                              stacklevel=2)
                continue
            return (self.transform(img) if self.transform else img), self.labels[i]
        raise RuntimeError("no readable image in this dataset")


def load_pets(
    split: str = "trainval",
    transform: Callable[[Image.Image], torch.Tensor] | None = None,
    root: str | Path | None = None,
    download: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> PetImages:
    """The Oxford-IIIT Pet split as a ``PetImages`` dataset, labels remapped to 0..k-1.

    Args:
        split: ``"trainval"`` or ``"test"``.
        transform: applied to each RGB PIL image (e.g. resize, to tensor, normalise).
        root: the data root; None reads ``COURSE_DATA``, then ``DEFAULT_ROOT``.
        download: True to download when missing (about 800 MB), False never; None downloads only outside
            grading mode.

    Raises:
        MissingData: the data is missing and was not, or could not be, downloaded; says what to do.
    """
    import torchvision

    env = os.environ if environ is None else environ
    where = pets_root(root, env)
    if not _present(where):
        allowed = download if download is not None else not grading_mode(env)
        advice = (
            f"Oxford-IIIT Pet not found under {where}. Set {DATA_ENV} to a folder that holds "
            "oxford-iiit-pet/images and oxford-iiit-pet/annotations, or run load_pets(download=True) "
            "with internet access (about 800 MB)."
        )
        if not allowed:
            raise MissingData(advice)
        try:
            torchvision.datasets.OxfordIIITPet(where, split=split, download=True)
        except (OSError, RuntimeError) as err:
            raise MissingData(f"{advice} The download failed: {type(err).__name__}: {err}") from None
    ds = torchvision.datasets.OxfordIIITPet(where, split=split)
    ids = _class_ids(where)
    remap = {class_id - 1: i for i, class_id in enumerate(ids)}  # torchvision's labels are class_id - 1
    names = {}
    for path, label in zip(ds._images, ds._labels):
        breed = Path(path).stem.rsplit("_", 1)[0]
        names.setdefault(label, " ".join(part.title() for part in breed.split("_")))
    classes = [names.get(class_id - 1, f"class {class_id}") for class_id in ids]
    return PetImages(ds._images, [remap[label] for label in ds._labels], classes, transform)


def small_subset(dataset: PetImages, per_class: int, seed: int = 0) -> torch.utils.data.Subset:
    """A ``torch.utils.data.Subset`` with at most ``per_class`` images of each label, chosen with ``seed``."""
    import torch

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    taken, keep = {}, []
    for i in order:
        label = dataset.labels[i]
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            keep.append(i)
    return torch.utils.data.Subset(dataset, sorted(keep))


def labels_of(dataset: PetImages | torch.utils.data.Subset) -> list[int]:
    """The int labels of a ``PetImages`` dataset, or of a ``torch.utils.data.Subset`` of one, in its order."""
    import torch

    if isinstance(dataset, torch.utils.data.Subset):
        inner = labels_of(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    if not hasattr(dataset, "labels"):
        raise TypeError(f"cannot read the labels of a {type(dataset).__name__}: "
                        "pass a PetImages or a Subset of one")
    return list(dataset.labels)


def train_valid_indices(labels: Sequence[int], valid_fraction: float = 0.2,
                        seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded, stratified split of positions ``0..len(labels)-1`` into training and validation.

    Each label's positions are shuffled with ``seed`` and ``round(valid_fraction * count)`` of them go to
    validation, at least one when a label has two or more examples and never all of them, so every breed is
    both trained on and validated on. The split depends on the labels and ``seed`` only: every strategy and
    every training seed of notebook 05 gets the same one.

    Returns:
        ``(train, valid)``: two sorted lists of positions, disjoint, together all of them.

    Raises:
        ValueError: ``valid_fraction`` outside (0, 1).
    """
    import torch

    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be between 0 and 1 (exclusive), got {valid_fraction!r}")
    generator = torch.Generator().manual_seed(seed)
    by_label = {}
    for position, label in enumerate(labels):
        by_label.setdefault(label, []).append(position)
    train, valid = [], []
    for label in sorted(by_label):
        positions = by_label[label]
        order = [positions[i] for i in torch.randperm(len(positions), generator=generator).tolist()]
        k = round(valid_fraction * len(positions))
        k = min(max(k, 1 if len(positions) >= 2 else 0), len(positions) - 1)
        valid += order[:k]
        train += order[k:]
    return sorted(train), sorted(valid)


def train_valid_split(*datasets: PetImages | torch.utils.data.Subset, valid_fraction: float = 0.2,
                      seed: int = 0) -> tuple[torch.utils.data.Subset, ...]:
    """The same stratified split (``train_valid_indices``) of one or more views of the trainval photos.

    Pass the augmented and the plain views of the same photos (the same files in the same order, different
    transforms) to split both alike. Returns ``(train_1, valid_1, train_2, valid_2, ...)``, each a
    ``torch.utils.data.Subset``. Notebook 05 trains on the first and makes every choice on the second;
    the test split is for the end.

    Raises:
        ValueError: the datasets do not hold the same labels in the same order.
    """
    import torch

    labels = labels_of(datasets[0])
    for other in datasets[1:]:
        if labels_of(other) != labels:
            raise ValueError("the datasets to split must be views of the same photos "
                             "(same labels, same order)")
    train, valid = train_valid_indices(labels, valid_fraction, seed)
    out = []
    for dataset in datasets:
        out += [torch.utils.data.Subset(dataset, train), torch.utils.data.Subset(dataset, valid)]
    return tuple(out)
