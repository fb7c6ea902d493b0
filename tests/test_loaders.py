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
    assert cpu.num_workers == 0 and not cpu.pin_memory and cpu.drop_last, "33 = 2 x 16 + 1: drop the batch of one"
    gpu = make_loader(data, 16, False, "cuda", workers=2)  # settings only: nothing is loaded here
    assert gpu.num_workers == 2 and gpu.pin_memory and not gpu.drop_last and gpu.persistent_workers
    assert len(make_loader(data, 11, True, "cpu")) == 3, "no batch of one, nothing dropped"
    with pytest.raises(ValueError, match="workers"):
        make_loader(data, 16, True, "cpu", workers=-1)


def test_shuffling_is_seeded():
    data = torch.utils.data.TensorDataset(torch.arange(20), torch.arange(20))
    order = lambda seed: torch.cat([x for x, _ in make_loader(data, 5, True, "cpu", seed=seed)]).tolist()
    assert order(3) == order(3) and order(3) != order(4) and sorted(order(3)) == list(range(20))
