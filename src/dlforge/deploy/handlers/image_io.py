"""Decoding and resizing images for image bundles (Pillow + numpy only).

The geometry of every resize is kept in a meta dict so that detection boxes and
segmentation masks can be mapped back to the original image:
``x_original = (x_model + offset_x) / scale_x`` (same for y).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dlforge.deploy.manifest import BundleError, Manifest


def describe(item: Any) -> str:
    """A short name for an input item in error messages."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array {item.shape} {item.dtype}>"
    return f"<{type(item).__name__}>"


def load_image(item: Any, channels: int = 3) -> Image.Image:
    """Decode one image input: a path, encoded bytes, a PIL image or a pixel array.

    Arrays are ``(H, W)`` or ``(H, W, C)``, uint8, or float in [0, 1].

    Raises:
        BundleError: for a missing file or data that is not a decodable image.
    """
    mode = "RGB" if channels == 3 else "L"
    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        img = _from_array(item)
    elif isinstance(item, (bytes, bytearray, memoryview, str, os.PathLike)):
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise BundleError(f"{path}: image file not found")
            src: Any = path
        else:
            src = io.BytesIO(bytes(item))
        try:
            with Image.open(src) as opened:
                opened.load()
                img = ImageOps.exif_transpose(opened)
                img = img.convert(mode) if img.mode != mode else img.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise BundleError(f"{describe(item)}: cannot decode image ({exc.__class__.__name__})") from None
        return img
    else:
        raise BundleError(f"{describe(item)}: unsupported image input type")
    return img.convert(mode) if img.mode != mode else img


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise BundleError(f"{describe(arr)}: image arrays must be (H, W) or (H, W, 3|4)")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise BundleError(f"{describe(arr)}: image arrays must be uint8 or float in [0, 1]")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def resize_image(img: Image.Image, size: tuple[int, int], mode: str, pad_value: float = 0.0) -> tuple[
    Image.Image, dict[str, Any]
]:
    """Resize to the model size ``(H, W)`` with ``mode``; returns the image and its geometry."""
    h, w = size
    w0, h0 = img.size
    if mode == "letterbox":
        s = min(w / w0, h / h0)
        nw, nh = max(1, round(w0 * s)), max(1, round(h0 * s))
        fill = int(round(pad_value * 255))
        canvas = Image.new(img.mode, (w, h), fill if img.mode == "L" else (fill, fill, fill))
        canvas.paste(img.resize((nw, nh), Image.BILINEAR), (0, 0))
        return canvas, {"orig_size": [w0, h0], "scale": [s, s], "offset": [0.0, 0.0], "valid": [nw, nh]}
    if mode == "center_crop":
        s = max(w / w0, h / h0)
        nw, nh = max(w, round(w0 * s)), max(h, round(h0 * s))
        left, top = (nw - w) // 2, (nh - h) // 2
        out = img.resize((nw, nh), Image.BILINEAR).crop((left, top, left + w, top + h))
        return out, {"orig_size": [w0, h0], "scale": [nw / w0, nh / h0], "offset": [left, top], "valid": [w, h]}
    out = img.resize((w, h), Image.BILINEAR) if (w0, h0) != (w, h) else img
    return out, {"orig_size": [w0, h0], "scale": [w / w0, h / h0], "offset": [0.0, 0.0], "valid": [w, h]}


def to_tensor(img: Image.Image, mean: list[float], std: list[float]) -> np.ndarray:
    """Pixels -> normalised float32 ``(C, H, W)``."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess_images(inputs: list[Any], manifest: Manifest) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Decode, resize and normalise a list of image inputs into one ``(B, C, H, W)`` batch."""
    spec = manifest.input
    size = (int(spec["size"][0]), int(spec["size"][1]))
    channels = int(spec.get("channels", 3))
    mean = spec.get("mean", [0.0] * channels)
    std = spec.get("std", [1.0] * channels)
    arrays, meta = [], []
    for item in inputs:
        img = load_image(item, channels)
        img, geo = resize_image(img, size, spec.get("resize", "stretch"), float(spec.get("pad_value", 0.0)))
        arrays.append(to_tensor(img, mean, std))
        meta.append(geo)
    return np.stack(arrays).astype(np.float32), meta
