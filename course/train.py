"""Plain training and evaluation loops: the model, the data and the device are arguments."""
import torch
import torch.nn.functional as F


def train_epoch(model, loader, optimizer, device, before_epoch=None):
    """One pass over ``loader`` with cross-entropy; returns the mean loss (float).

    Calls ``model.train()`` first, as every training loop does, then ``before_epoch(model)`` if given
    (the place where fastai's BnFreeze puts frozen BatchNorm layers back in eval mode).
    ``loader`` yields (images (N, 3, H, W) float32, labels (N,) int64).
    """
    model.train()
    if before_epoch is not None:
        before_epoch(model)
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    return total / max(count, 1)


@torch.no_grad()
def accuracy(model, loader, device):
    """Top-1 accuracy (float in [0, 1]) of ``model`` in eval mode over ``loader``."""
    model.eval()
    correct, count = 0, 0
    for x, y in loader:
        correct += (model(x.to(device)).argmax(dim=1).cpu() == y).sum().item()
        count += len(y)
    return correct / max(count, 1)
