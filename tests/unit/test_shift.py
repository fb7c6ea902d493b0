"""course.shift on the real pet photos: the corruptions are seeded, grow with severity, keep size and labels,
and the cache is written once and read back."""
from pathlib import Path

import pytest
import torch
from PIL import Image

from course import shift
from course.data import PetImages, load_pets


def _pixels(img):
    """An RGB image's pixels as floats in [0, 1], (H * W * 3,)."""
    return torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8).float() / 255


@pytest.fixture()
def pets(shared_data):
    """The 298 test photos of pets-3breeds."""
    return load_pets("test", root=shared_data / "pets-3breeds", download=False)


def test_each_corruption_grows_with_severity_and_keeps_the_size(pets):
    """On three real photos at 224 px, the mean change of a pixel rises with the severity for every
    corruption, and the image stays an RGB image of the same size."""
    photos = [shift.square(pets.load(i), 224) for i in (0, 100, 200)]
    for kind in shift.CORRUPTIONS:
        changes = []
        for severity in range(1, 6):
            total = 0.0
            for photo in photos:
                out = shift.corrupt(photo, kind, severity, seed=0)
                assert out.mode == "RGB" and out.size == photo.size == (224, 224)
                total += (_pixels(out) - _pixels(photo)).abs().mean().item()
            changes.append(total / len(photos))
        assert changes[0] > 0.005, f"{kind} at severity 1 changes nothing: {changes}"
        assert all(b > a for a, b in zip(changes, changes[1:])), f"{kind}: {changes}"


def test_noise_is_seeded_by_the_run_and_the_photo(pets):
    """The same seed gives the same bytes; another seed, or another photo's name, other noise."""
    photo = shift.square(pets.load(0), 64)
    a = shift.corrupt(photo, "gaussian_noise", 3, seed=shift.photo_seed(0, "x.jpg"))
    again = shift.corrupt(photo, "gaussian_noise", 3, seed=shift.photo_seed(0, "x.jpg"))
    other = shift.corrupt(photo, "gaussian_noise", 3, seed=shift.photo_seed(1, "x.jpg"))
    other_name = shift.corrupt(photo, "gaussian_noise", 3, seed=shift.photo_seed(0, "y.jpg"))
    assert a.tobytes() == again.tobytes()
    assert a.tobytes() != other.tobytes() and a.tobytes() != other_name.tobytes()
    assert 0 <= shift.photo_seed(2**40, "é.jpg") < 2**63


def test_contrast_and_brightness_do_what_they_say():
    """Contrast keeps the mean and shrinks the spread by c; brightness raises the value channel by c."""
    x = torch.linspace(0, 1, 64 * 64 * 3).view(64, 64, 3)
    img = Image.frombytes("RGB", (64, 64), bytes((x * 255).round().to(torch.uint8).numpy()))
    low = _pixels(shift.corrupt(img, "contrast", 1))
    assert abs(low.mean() - _pixels(img).mean()) < 0.01
    assert abs(low.std() / _pixels(img).std() - shift.SEVERITIES["contrast"][0]) < 0.01
    dark = Image.new("RGB", (8, 8), (40, 20, 10))
    v = max(shift.corrupt(dark, "brightness", 5).getpixel((0, 0))) / 255
    assert abs(v - (40 / 255 + shift.SEVERITIES["brightness"][4])) < 0.01


@pytest.mark.parametrize("kind, severity",
                         [("fog", 1), ("jpeg", 0), ("jpeg", 6), ("jpeg", 2.0), ("jpeg", True)])
def test_unknown_corruption_or_severity_is_refused(kind, severity):
    """A corruption not in the list, or a severity that is not an int from 1 to 5, is a ValueError that
    says what is allowed."""
    with pytest.raises(ValueError, match="gaussian_noise|1 to 5"):
        shift.corrupt(Image.new("RGB", (8, 8)), kind, severity)


def test_the_cache_is_written_once_and_read_back(pets, tmp_path, monkeypatch):
    """The first pass corrupts and writes a PNG per photo (nothing half-written left); a second dataset on the
    same folder reads them back without corrupting anything, equal pixel for pixel, with the same labels."""
    subset = type(pets)(pets.files[:6], pets.labels[:6], pets.classes)
    first = shift.ShiftedImages(subset, "gaussian_noise", 2, size=96, seed=3, cache=tmp_path)
    images = [first[i] for i in range(len(first))]
    written = sorted((tmp_path / "gaussian_noise-2-seed3-96px").iterdir())
    assert [p.name for p in written] == sorted(f"{Path(f).stem}.png" for f in subset.files)

    def no_corrupting(*args, **kwargs):
        raise AssertionError("corrupted again instead of reading the cache")

    monkeypatch.setattr(shift, "corrupt", no_corrupting)
    second = shift.ShiftedImages(subset, "gaussian_noise", 2, size=96, seed=3, cache=tmp_path)
    for (img, label), (again, label_again) in zip(images, (second[i] for i in range(len(second)))):
        assert img.tobytes() == again.tobytes() and label == label_again


def test_the_datasets_quirky_files_are_corrupted_too(shared_data):
    """The GIF and the PNG with alpha named .jpg in the real data come out as 3-channel images."""
    images = shared_data / "pets-3breeds" / "oxford-iiit-pet" / "images"
    files = [images / "Abyssinian_34.jpg", images / "Abyssinian_5.jpg"]
    with Image.open(files[0]) as gif, Image.open(files[1]) as png:
        assert (gif.format, png.format, png.mode) == ("GIF", "PNG", "RGBA")
    shifted = shift.ShiftedImages(PetImages(files, [0, 0], ["Abyssinian"]), "jpeg", 3, size=64)
    for i in range(2):
        img, _ = shifted[i]
        assert img.mode == "RGB" and img.size == (64, 64)


def test_an_unreadable_photo_is_skipped_with_a_warning(shared_data, tmp_path):
    """A file that is not an image gives way to the next photo, with a warning; nothing is cached for it."""
    images = shared_data / "pets-3breeds" / "oxford-iiit-pet" / "images"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    good = images / "Abyssinian_5.jpg"
    shifted = shift.ShiftedImages(PetImages([broken, good], [0, 1], ["a", "b"]), "contrast", 2, size=32,
                                  cache=tmp_path / "cache")
    with pytest.warns(RuntimeWarning, match="skipping unreadable image"):
        img, label = shifted[0]
    assert label == 1 and img.size == (32, 32)
    assert [p.name for p in (tmp_path / "cache" / "contrast-2-seed0-32px").iterdir()] == ["Abyssinian_5.png"]
