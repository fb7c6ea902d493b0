"""Image transforms and DataLoaders: augmentation for training, none for evaluation, fast on a GPU."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # for the annotations only: torchvision is imported when a transform is made
    from torchvision import transforms


def train_transform(size: int, mean: Sequence[float], std: Sequence[float],
                    min_scale: float = 0.35) -> transforms.Compose:
    """Augmentation for training: a random crop of 35-100 % of the area, resized to ``size`` px, and a flip.

    Input: an RGB PIL image of any size. Output: float32 tensor (3, size, size), normalised with mean, std.
    """
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> transforms.Compose:
    """No augmentation: resize the short side to ``size * 8 / 7`` px, then take the central ``size`` px
    square.

    (224 px crops from 256 px images, as ImageNet models are evaluated.) Output as ``train_transform``.
    """
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(round(size * 8 / 7), antialias=True),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class _Batched(torch.utils.data.TensorDataset):
    """A TensorDataset the DataLoader reads a whole batch at a time: one indexing per tensor, no per-item
    work."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def _whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The collate function of ``_Batched``: its batches come already stacked."""
    return batch


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, train: bool, device: torch.device | str,
                workers: int | None = None, seed: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader that shuffles (with ``seed``) and drops a last batch of one image only when ``train``.

    On a GPU it decodes images in worker processes (``workers``, default: up to 8, one per core) and pins
    memory so that copies to the GPU can overlap compute; on the CPU it loads in the main process by
    default, since workers would compete with the model for the same cores. Tensors already in memory (a
    ``TensorDataset``, such as cached features) are indexed a batch at a time: the same batches, in the same
    order, without collating them item by item (a quarter of the time of an epoch of a linear head over
    cached features).
    """
    device = torch.device(device)
    tensors = type(dataset) is torch.utils.data.TensorDataset
    if tensors:
        dataset = _Batched(*dataset.tensors)
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) % batch_size == 1,  # a batch of 1 breaks train-mode BatchNorm
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed) if train else None,
        collate_fn=_whole_batch if tensors else None,
    )
