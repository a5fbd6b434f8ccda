"""A class-balanced subset of the CIFAR-10 JPEG folders, for searches sized for a CPU.

Links the first ``--train`` images of each class of ``SOURCE/train`` and the first ``--test`` of each class of
``SOURCE/test`` (sorted by file name) into ``DEST`` in the same ``train/<class>/``, ``test/<class>/`` layout,
so ``data: {name: cifar10, root: DEST}`` reads it:

    mkdir -p .data/cifar10 && tar -xzf ../shared/datasets/cifar10-jpg.tar.gz -C .data/cifar10
    python benchmarks/cifar10_subset.py .data/cifar10 .data/cifar10-500 --train 500 --test 100
    hpo bench --search benchmarks/cifar10_search_cpu.yaml --seeds 5 --tolerance 0.02
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def link_subset(source: Path, dest: Path, per_class: dict[str, int]) -> int:
    linked = 0
    for part, count in per_class.items():
        classes = sorted(p for p in (source / part).iterdir() if p.is_dir())
        if not classes:
            sys.exit(f"{source / part}: no class folders; expected {part}/<class>/*.jpg")
        for folder in classes:
            target = dest / part / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(folder.iterdir())[:count]:
                link = target / image.name
                if not link.is_symlink() and not link.exists():
                    os.symlink(image.resolve(), link)
                linked += 1
    return linked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the unpacked CIFAR-10 JPEGs (train/ and test/)")
    parser.add_argument("dest", type=Path, help="the subset's folder (created)")
    parser.add_argument("--train", type=int, default=500, help="training images per class (default: 500)")
    parser.add_argument("--test", type=int, default=100, help="test images per class (default: 100)")
    args = parser.parse_args()
    count = link_subset(args.source, args.dest, {"train": args.train, "test": args.test})
    print(f"{count} images linked under {args.dest}")


if __name__ == "__main__":
    main()
