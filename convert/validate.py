"""Checks of untrusted record content: images (fully decoded), text and base64. Each failure is a `Reject`
whose reason the conversion report counts."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
import warnings
from typing import Any, Optional

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default: ~0.25 GiB of RGBA
# Raster formats of web images. Others (EPS would run Ghostscript, PDF, ...) are rejected, never decoded.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO


class Reject(Exception):
    """A record (or an image of a record) is unusable; `reason` is a short snake_case code for the report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int


def validate_image(data: Optional[bytes], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageInfo:
    """Fully decode `data`; raise `Reject` with the reason when it is no usable image."""
    from PIL import Image, UnidentifiedImageError

    if data is None:
        raise Reject("image_missing")
    if len(data) == 0:
        raise Reject("image_empty")
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        # PIL only warns between max_pixels and 2x max_pixels; treat every bomb alike.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
                img.load()  # raises on truncated / corrupt data, which open() alone does not read
                return ImageInfo(int(img.width), int(img.height))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise Reject("image_too_large", str(e)) from None
        except UnidentifiedImageError:
            raise Reject(_unsupported_or_not_image(data)) from None
        except Exception as e:  # decoders raise assorted types on malformed data; none may stop a run
            raise Reject("image_corrupt", f"{type(e).__name__}: {e}") from None


def _unsupported_or_not_image(data: bytes) -> str:
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)):  # identification only, nothing is decoded
                return "image_format_unsupported"
    except Exception:
        return "image_not_an_image"


def decode_utf8_text(data: Optional[bytes], what: str) -> str:
    """Strict UTF-8 decode of a caption/text member; stripped, non-empty."""
    if data is None:
        raise Reject(f"{what}_missing")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject("bad_utf8_text", what) from None
    return check_text(text, what)


def check_text(text: Any, what: str) -> str:
    if text is None:
        raise Reject(f"{what}_missing")
    if not isinstance(text, str):
        raise Reject(f"{what}_invalid", f"not a string: {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        raise Reject("bad_utf8_text", what) from None
    text = text.strip()
    if not text:
        raise Reject(f"{what}_empty")
    return text


def decode_base64_image(value: Any) -> bytes:
    """Base64 image string as stored by OpenFlamingo's converters, including the Python bytes repr
    `"b'/9j/...'"` some of them wrote (OpenFlamingo#198)."""
    if not isinstance(value, str) or not value:
        raise Reject("image_missing")
    if len(value) >= 3 and value[0] == "b" and value[1] in "'\"" and value[-1] == value[1]:
        value = value[2:-1]
    if "\n" in value or " " in value:
        value = "".join(value.split())  # base64.encodebytes-style line breaks
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Reject("image_base64_invalid") from None


def finite_or_none(x: Any) -> Optional[float]:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)
