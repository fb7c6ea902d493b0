"""Small models the notebooks and tests share. Real pretrained networks live elsewhere."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def tiny_cnn(num_classes: int = 4, in_channels: int = 3, width: int = 8) -> nn.Sequential:
    """A two-part CNN: ``net.body`` (convolutions with BatchNorm) and ``net.head`` (a linear layer).

    Input: float32 images of shape (N, in_channels, H, W), any H, W >= 1.
    Output: logits of shape (N, num_classes).
    """
    body = nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return nn.Sequential(OrderedDict(body=body, head=nn.Linear(2 * width, num_classes)))


class TiedLM(nn.Module):
    """A bag-of-words language model whose output layer shares its weight with the embedding.

    Weight tying (as in GPT-2 and AWD-LSTM) makes ``self.head.weight`` and ``self.embed.weight`` the same
    ``nn.Parameter``: ``model.parameters()`` yields it once, ``state_dict()`` holds it under both names.

    Input: token ids, int64 of shape (N, T) with values in [0, vocab_size).
    Output: logits of shape (N, vocab_size) for the next token.
    """

    def __init__(self, vocab_size: int = 10, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # the tie: one Parameter, two owners

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.mix(self.embed(tokens).mean(dim=1)))
        return self.head(hidden)
