"""Images in datasets: file suffixes, fields that name them, encoded bytes, and opening them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pela.errors import PelaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# a record holds its image in one of these fields: a file path (Hugging Face's imagefolder metadata
# says file_name), or, in Parquet and Arrow, the encoded image itself ({"bytes": ..., "path": ...};
# CIFAR's is img)
IMAGE_FIELDS = ("image", "img", "file_name", "image_path", "filepath", "path")


def is_image(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("bytes"), (bytes, bytearray)) or is_image(value.get("path"))
    return (
        isinstance(value, str)
        and Path(value).suffix.lower() in IMAGE_SUFFIXES
        or encoded_image(value)
    )


# how encoded images begin: PNG, JPEG, GIF, BMP, TIFF (both byte orders), WebP (RIFF....WEBP)
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def encoded_image(value: Any) -> bool:
    """Whether ``value`` is an encoded image: the bytes themselves, or Hugging Face's {"bytes":
    ...}."""
    if isinstance(value, dict):
        return encoded_image(value.get("bytes"))
    return isinstance(value, (bytes, bytearray)) and (
        value.startswith(IMAGE_MAGIC) or value[:4] == b"RIFF" and value[8:12] == b"WEBP"
    )


def open_image(path: Path, data: bytes | None = None) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            # 16-bit grey (PNG, TIFF): convert would clip it to white
            if im.mode == "I" or im.mode.startswith("I;16"):
                import numpy as np

                grey = (
                    (np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257)
                    .round()
                    .astype(np.uint8)
                )
                return Image.fromarray(grey).convert("RGB")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise PelaError(f"cannot read image {path}: {e}") from e
