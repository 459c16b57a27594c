"""The corruptions robustness is measured under: one definition each, three severities, seeded.

Images are batches of float32 pixels in [0, 255] (N, H, W, C), as the model takes them; token
corruptions work on the stored ids (PAD-padded); typos change the stored text, which is then
encoded again as ingest encodes it. Each function takes (inputs, the severity's parameter, a
numpy Generator) and returns corrupted inputs of the same shape and type. Plain numpy and Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from pipeline.ingest.tokens import OOV, PAD


@dataclass(frozen=True)
class Corruption:
    name: str
    apply: Callable[[Any, float, np.random.Generator], Any]
    levels: tuple[float, float, float]  # the parameter at severities 1, 2, 3 (README table)


def _per_image(pixels: np.ndarray, change: Callable[[Image.Image, int], Image.Image]
               ) -> np.ndarray:
    """Apply a Pillow operation to each image (as 8-bit; with its index), back to float32."""
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels.clip(0, 255).astype(np.uint8)):
        changed = change(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image), i)
        out[i] = np.asarray(changed, dtype=np.float32).reshape(image.shape)
    return out


def gaussian_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return (pixels + rng.normal(0, sigma, pixels.shape)).clip(0, 255).astype(np.float32)


def gaussian_blur(pixels: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    return _per_image(pixels, lambda image, _: image.filter(ImageFilter.GaussianBlur(radius)))


def brightness(pixels: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    return (pixels + shift).clip(0, 255).astype(np.float32)


def contrast(pixels: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Pixels pulled towards each image's mean: ``factor`` 1 keeps them, 0 makes a flat image."""
    mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
    return (mean + (pixels - mean) * factor).clip(0, 255).astype(np.float32)


def jpeg(pixels: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    def recompress(image: Image.Image, _: int) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(quality))
        return Image.open(io.BytesIO(buffer.getvalue()))

    return _per_image(pixels, recompress)


def rotation(pixels: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Each image turned by ``degrees``, clockwise or not at random; corners filled black."""
    angles = rng.choice([-1.0, 1.0], len(pixels)) * degrees
    return _per_image(pixels, lambda image, i: image.rotate(float(angles[i]),
                                                            resample=Image.BILINEAR))


def occlusion(pixels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A square of side ``share`` x the shorter side, at a random place, in the image's mean."""
    out = pixels.copy()
    height, width = pixels.shape[1:3]
    side = max(1, round(share * min(height, width)))
    for image in out:
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        image[top:top + side, left:left + side] = image.mean()
    return out


def _repad(kept: list[np.ndarray], length: int) -> np.ndarray:
    out = np.full((len(kept), length), PAD, dtype=np.int32)
    for i, ids in enumerate(kept):
        out[i, :len(ids)] = ids
    return out


def word_dropout(ids: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each token dropped with probability ``rate``; the rest close up."""
    kept = [row[(row != PAD) & (rng.random(row.shape) >= rate)] for row in ids]
    return _repad(kept, ids.shape[1])


def word_shuffle(ids: np.ndarray, window: float, rng: np.random.Generator) -> np.ndarray:
    """Tokens shuffled within consecutive windows of ``window`` tokens."""
    size, rows = int(window), []
    for row in ids:
        tokens = row[row != PAD].copy()
        for start in range(0, len(tokens), size):
            rng.shuffle(tokens[start:start + size])
        rows.append(tokens)
    return _repad(rows, ids.shape[1])


def out_of_vocabulary(ids: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each token replaced by the unknown-word id with probability ``rate``."""
    hit = (ids != PAD) & (rng.random(ids.shape) < rate)
    return np.where(hit, OOV, ids).astype(np.int32)


def _typo(word: str, rng: np.random.Generator) -> str:
    """One edit: two neighbouring letters swapped, a letter dropped or a letter doubled."""
    if len(word) < 2:
        return word + word
    at = int(rng.integers(0, len(word) - 1))
    edit = int(rng.integers(0, 3))
    if edit == 0:
        return word[:at] + word[at + 1] + word[at] + word[at + 2:]
    return word[:at] + word[at + 1:] if edit == 1 else word[:at] + word[at] + word[at:]


def typos(texts: list[str], rate: float, rng: np.random.Generator) -> list[str]:
    """Each word misspelt (one edit) with probability ``rate``."""
    return [" ".join(_typo(w, rng) if rng.random() < rate else w for w in text.split(" "))
            for text in texts]


IMAGE_CORRUPTIONS = (
    Corruption("gaussian_noise", gaussian_noise, (16, 48, 96)),
    Corruption("gaussian_blur", gaussian_blur, (0.5, 1.0, 2.0)),
    Corruption("brightness", brightness, (40, 80, 140)),
    Corruption("contrast", contrast, (0.6, 0.35, 0.15)),
    Corruption("jpeg", jpeg, (30, 10, 2)),
    Corruption("rotation", rotation, (10, 25, 45)),
    Corruption("occlusion", occlusion, (0.2, 0.35, 0.5)),
)
TOKEN_CORRUPTIONS = (
    Corruption("word_dropout", word_dropout, (0.1, 0.25, 0.5)),
    Corruption("word_shuffle", word_shuffle, (2, 4, 8)),
    Corruption("out_of_vocabulary", out_of_vocabulary, (0.1, 0.25, 0.5)),
)
TEXT_CORRUPTIONS = (Corruption("typos", typos, (0.1, 0.25, 0.5)),)
FGSM_EPSILONS = (0.02, 0.05, 0.15)  # images: the adversarial step, as a share of 255
