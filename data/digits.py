"""scikit-learn's bundled digits: 1,797 grayscale 8x8 images of 0-9, no download."""

from __future__ import annotations

from hpo.data import register_dataset
from hpo.data.images import DataSource, LabelledImages
from hpo.core.lazy import lazy

torch = lazy("torch")


@register_dataset("digits")
def digits() -> DataSource:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixels are ink counts 0..16; scale to the 0..255 of every other image source.
    pixels = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round().to(torch.uint8)
    images = pixels.unsqueeze(1).contiguous()  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()
    return DataSource(LabelledImages(images, labels), tuple(str(c) for c in bunch.target_names))
