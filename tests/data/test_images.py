"""Images in records: recognised by name or by their first bytes, opened as RGB, or one clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from pela.data.images import encoded_image, is_image, open_image
from pela.errors import PelaError


def _png(mode="RGB", size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_an_image_is_a_path_with_an_image_suffix_or_encoded_bytes():
    assert is_image("a/b.JPG") and is_image({"path": "x.png"}) and is_image({"bytes": b"anything"})
    assert not is_image("notes.txt") and not is_image(3)
    assert encoded_image(_png()) and encoded_image({"bytes": _png()})
    assert encoded_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") and not encoded_image(b"hello")


def test_images_open_as_rgb_and_16_bit_grey_keeps_its_range(tmp_path):
    assert open_image(tmp_path / "x.png", _png()).mode == "RGB"
    grey = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    path = tmp_path / "g.png"
    grey.save(path)
    opened = open_image(path)
    assert opened.mode == "RGB" and np.asarray(opened).max() == 255  # white, not clipped to 1/257


def test_a_file_that_is_no_image_says_which(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(PelaError, match="cannot read image .*bad.png"):
        open_image(tmp_path / "bad.png")
