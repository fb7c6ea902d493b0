"""course.data on the real pet photos and on broken files; course.bnstats and course.fit.train_epoch on
small models."""
import io
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from course.bnstats import bn_drift, bn_stats
from course.data import DEFAULT_ROOT, MissingData, load_pets, pets_root, small_subset
from course.fit import accuracy, train_epoch


def test_pets_root_precedence(tmp_path):
    assert pets_root(tmp_path, {"COURSE_DATA": "/elsewhere"}) == tmp_path
    assert pets_root(None, {"COURSE_DATA": "/elsewhere"}) == Path("/elsewhere")
    assert pets_root(None, {}) == DEFAULT_ROOT


def test_real_subset_labels_are_remapped_and_quirky_files_decode(shared_data):
    root = shared_data / "pets-3breeds"
    train, test = load_pets("trainval", root=root), load_pets("test", root=root)
    assert (len(train), len(test)) == (300, 298)
    assert train.classes == ["Abyssinian", "American Bulldog", "Bengal"] == test.classes
    assert sorted(set(train.labels)) == [0, 1, 2], "official ids 1, 2, 6 become 0, 1, 2"
    png = [Path(f).name for f in test.files].index("Abyssinian_5.jpg")  # really a PNG with alpha
    img, label = test[png]
    assert img.mode == "RGB" and label == 0
    sample = load_pets("trainval", root=shared_data / "pets-sample")
    assert len(sample) == 259 and len(sample.classes) == 37 and sorted(set(sample.labels)) == list(range(37))


def test_gif_named_jpg_decodes(shared_data):
    from course.data import PetImages

    gif = shared_data / "pets-3breeds" / "oxford-iiit-pet" / "images" / "Abyssinian_34.jpg"
    img, _ = PetImages([gif], [0], ["Abyssinian"])[0]
    assert img.mode == "RGB" and img.size[0] > 0


def _tiny_root(tmp_path, broken):
    from PIL import Image

    images = tmp_path / "oxford-iiit-pet" / "images"
    annotations = tmp_path / "oxford-iiit-pet" / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    lines = []
    for i, (breed, class_id) in enumerate([("Bengal", 6), ("Bengal", 6), ("boxer", 10)]):
        name = f"{breed}_{i}"
        if i in broken:
            buf = io.BytesIO()
            Image.new("RGB", (20, 20), "red").save(buf, format="JPEG")
            (images / f"{name}.jpg").write_bytes(buf.getvalue()[:40])  # truncated
        else:
            Image.new("RGB", (20, 20), "blue").save(images / f"{name}.jpg")
        lines.append(f"{name} {class_id} 1 1")
    (annotations / "trainval.txt").write_text("\n".join(lines) + "\n")
    (annotations / "test.txt").write_text("")
    return tmp_path


def test_unreadable_image_is_skipped_with_a_warning(tmp_path):
    ds = load_pets("trainval", root=_tiny_root(tmp_path, broken={1}))
    assert ds.classes == ["Bengal", "Boxer"] and ds.labels == [0, 0, 1]
    with pytest.warns(RuntimeWarning, match="skipping unreadable image"):
        img, label = ds[1]
    assert img.size == (20, 20) and label == 1, "the next readable image stands in"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1]  # known bad: skipped silently the second time, no new warning


def test_missing_data_says_what_to_do_and_never_downloads_while_grading(tmp_path, monkeypatch):
    import torchvision

    def no_download(*args, **kwargs):
        raise AssertionError("must not try to download")

    monkeypatch.setattr(torchvision.datasets.OxfordIIITPet, "_download", no_download)
    with pytest.raises(MissingData, match="COURSE_DATA"):
        load_pets(root=tmp_path, download=False)
    with pytest.raises(MissingData, match="COURSE_DATA"):
        load_pets(root=tmp_path, environ={"NBGRADER_EXECUTION": "autograde"})


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(self):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets.OxfordIIITPet, "_download", offline)
    with pytest.raises(MissingData, match="download failed: OSError: no network"):
        load_pets(root=tmp_path, download=True)


def test_small_subset_takes_at_most_n_per_class(shared_data):
    ds = load_pets("test", root=shared_data / "pets-3breeds")
    sub = small_subset(ds, 3, seed=1)
    labels = [ds.labels[i] for i in sub.indices]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sub.indices == small_subset(ds, 3, seed=1).indices != small_subset(ds, 3, seed=2).indices


def test_bn_drift_sees_train_mode_forwards_only():
    from torchvision.ops import FrozenBatchNorm2d

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), FrozenBatchNorm2d(4))
    before = bn_stats(net)
    assert set(before) == {"1", "2"}
    net.eval()
    net(torch.randn(4, 3, 8, 8) + 5)
    assert bn_drift(before, net) == {"1": 0.0, "2": 0.0}
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, 8, 8) + 5)
    drift = bn_drift(before, net)
    assert drift["1"] > 0 and drift["2"] == 0.0


def test_train_epoch_learns_and_calls_before_epoch_after_train():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    seen = []
    losses = [train_epoch(net, loader, opt, torch.device("cpu"), lambda m: seen.append(m.training))
              for _ in range(5)]
    assert seen == [True] * 5, "before_epoch runs after model.train()"
    assert losses[-1] < losses[0]
    acc = accuracy(net, loader, torch.device("cpu"))
    assert 0.9 <= acc <= 1.0 and not net.training


def test_the_validation_split_is_stratified_seeded_and_disjoint(shared_data):
    from course.data import labels_of, train_valid_indices, train_valid_split

    train_set = load_pets("trainval", root=shared_data / "pets-sample")   # 7 photos of each of 37 breeds
    labels = labels_of(train_set)
    train, valid = train_valid_indices(labels, 0.2, seed=0)
    assert sorted(train + valid) == list(range(259)) and not set(train) & set(valid)
    per_breed = [sum(labels[i] == c for i in valid) for c in range(37)]
    assert per_breed == [1] * 37, "round(0.2 * 7) = 1 validation photo of every breed"
    assert train_valid_indices(labels, 0.2, seed=0) == (train, valid), "the same seed, the same split"
    assert train_valid_indices(labels, 0.2, seed=1) != (train, valid), "another seed, another split"
    # a breed with one photo trains on it; a breed with two gives one to validation; none gives all away
    t, v = train_valid_indices([0, 1, 1, 2, 2, 2], 0.9)
    assert 0 in t and sum(i in v for i in (1, 2)) == 1 and sum(i in v for i in (3, 4, 5)) == 2
    # two views of the same photos split alike; views of other photos are refused
    aug, plain = load_pets("trainval", root=shared_data / "pets-sample"), train_set
    a_train, a_valid, p_train, p_valid = train_valid_split(aug, plain, seed=0)
    assert a_train.indices == p_train.indices == train and a_valid.indices == p_valid.indices == valid
    sub = small_subset(train_set, 3)
    s_train, s_valid = train_valid_split(sub, valid_fraction=0.34)
    assert len(s_valid) == 37 and sorted(labels_of(s_valid)) == list(range(37)), "one of 3 photos a breed"
    assert set(s_train.indices).isdisjoint(s_valid.indices) and len(s_train) == 2 * 37
    with pytest.raises(ValueError, match="same photos"):
        train_valid_split(train_set, load_pets("test", root=shared_data / "pets-sample"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_valid_indices(labels, 1.0)
