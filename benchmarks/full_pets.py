"""Benchmark 5, for users with internet and a GPU: strategies (a)-(d) on the full Oxford-IIIT Pet with
torchvision's ResNet-34 at 224 px, printing error rate and training wall time per strategy.

    python -m benchmarks.full_pets                       # downloads the data (800 MB) and weights once
    python -m benchmarks.full_pets --data /shared/pets --epochs 6 --seeds 0 1 2

Compare with fastbook (chapters 1 and 5): ResNet-34 at 224 px reaches 5.4-5.9 % error after unfreezing
with discriminative learning rates, about 20 s per frozen and 24 s per unfrozen epoch on its GPU. Our split
is torchvision's (trainval 3,680 / test 3,669 photos), fastbook's a random 20 % of all photos: close, not
equal. Any option of ``benchmarks.accuracy`` works here too; ``--strategies abcdes`` adds LP-FT and the
from-scratch baseline.
"""
from benchmarks import accuracy

DEFAULTS = {"arch": "resnet34", "strategies": "abcd", "seeds": [0], "epochs": 5, "batch": 64}


def main(argv=None):
    return accuracy.main(argv, description=__doc__, defaults=DEFAULTS)


if __name__ == "__main__":
    main()
