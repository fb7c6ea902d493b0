"""course.loaders on real photos: augmented and plain views, and loader settings per device."""
import pytest
import torch

from course.data import load_pets
from course.loaders import eval_transform, make_loader, train_transform
from course.pretrained import LITE0_MEAN, LITE0_STD


def test_views_have_the_size_and_range_the_model_expects(shared_data):
    root = shared_data / "pets-3breeds"
    plain = load_pets("test", eval_transform(96, LITE0_MEAN, LITE0_STD), root=root)
    augmented = load_pets("test", train_transform(96, LITE0_MEAN, LITE0_STD), root=root)
    x, _ = plain[0]
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0, "mean = std = 0.5 maps [0, 1] to [-1, 1]"
    assert torch.equal(plain[0][0], plain[0][0]), "evaluation views are deterministic"
    torch.manual_seed(0)
    a, b = augmented[0][0], augmented[0][0]
    assert a.shape == (3, 96, 96) and not torch.equal(a, b), "training views are random"


def test_loader_settings_follow_the_device():
    data = torch.utils.data.TensorDataset(torch.zeros(33, 2), torch.zeros(33, dtype=torch.long))
    cpu = make_loader(data, 16, True, "cpu")
    assert cpu.num_workers == 0 and not cpu.pin_memory and cpu.drop_last, \
        "33 = 2 x 16 + 1: drop the batch of one"
    gpu = make_loader(data, 16, False, "cuda", workers=2)  # settings only: nothing is loaded here
    assert gpu.num_workers == 2 and gpu.pin_memory and not gpu.drop_last and gpu.persistent_workers
    assert len(make_loader(data, 11, True, "cpu")) == 3, "no batch of one, nothing dropped"
    with pytest.raises(ValueError, match="workers"):
        make_loader(data, 16, True, "cpu", workers=-1)


def test_shuffling_is_seeded():
    data = torch.utils.data.TensorDataset(torch.arange(20), torch.arange(20))

    def order(seed):
        return torch.cat([x for x, _ in make_loader(data, 5, True, "cpu", seed=seed)]).tolist()

    assert order(3) == order(3) and order(3) != order(4) and sorted(order(3)) == list(range(20))


@pytest.mark.parametrize("train", [True, False])
def test_tensors_in_memory_come_a_batch_at_a_time_with_the_same_batches(train):
    """Cached features (a TensorDataset) are indexed a batch at a time: the batches, their order and the
    dropped batch of one are those of a plain DataLoader over the same items, shuffled with the same seed."""
    data = torch.utils.data.TensorDataset(torch.randn(33, 4), torch.arange(33))
    fast = make_loader(data, 8, train, "cpu", seed=5)
    plain = torch.utils.data.DataLoader(data, 8, shuffle=train, drop_last=train and 33 % 8 == 1,
                                        generator=torch.Generator().manual_seed(5) if train else None)
    got, want = list(fast), list(plain)
    assert len(fast) == len(plain) == len(got) == len(want) == (4 if train else 5)
    for (x, y), (x0, y0) in zip(got, want):
        assert torch.equal(x, x0) and torch.equal(y, y0)
    assert fast.batch_size == 8 and fast.drop_last == train
    assert fast.batch_size == 8 and fast.drop_last == train


class _Counting(torch.utils.data.TensorDataset):
    """A TensorDataset whose items may be more than stored tensors: it must keep the item-by-item path."""

    calls = 0

    def __getitem__(self, i):
        _Counting.calls += 1
        return super().__getitem__(i)


def test_a_tensor_dataset_subclass_keeps_its_own_getitem():
    data = _Counting(torch.randn(10, 2), torch.arange(10))
    batches = list(make_loader(data, 4, False, "cpu"))
    assert _Counting.calls == 10 and [len(y) for _, y in batches] == [4, 4, 2]
