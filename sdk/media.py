"""Media for ``run.log()``: ``Image``, ``Table``, ``Histogram``, ``Audio``, ``Video``, ``Html``, ``Plotly``.

    run.log({"examples": runstream.Image(array, caption="epoch 3"),
             "preds": runstream.Table(columns=["id", "label"], data=[[1, "cat"]]),
             "weights": runstream.Histogram(values)})

A logged media object becomes a file of the run
(``media/<images|tables|audio|videos|html|plotly>/<key>_<step>_<sha8>.<ext>``), written to the
run's folder and uploaded like ``run.save(..., policy="now")``: content-addressed in the object
store (identical content is stored once), spooled first, sent by ``runstream sync``
if the process dies. The history row holds a *reference*, a dict with W&B's ``_type``
(``image-file``, ``table-file``, ``audio-file``, ``video-file``, ``html-file``, ``plotly-file``)
and the file's ``path``, ``sha256``, ``size`` and per-type metadata (``width``/``height``,
``nrows``/``ncols``/``columns``, ...). A ``Histogram`` is small and stays in the row
(``_type: histogram``, ``values`` and ``bins``). A list of images logs them together
(``_type: images``, ``items``). The server's ``media`` view lists them all.

Encoding needs no extra package: PNG, WAV and animated PNG are written here (zlib, ``wave``);
Pillow, numpy, pandas, matplotlib, plotly and torch are used only when the caller's objects come
from them.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["Audio", "Histogram", "Html", "Image", "Media", "Plotly", "Table", "Video", "resolve"]

MAX_BINS = 512


class Media:
    """A value that ``log()`` stores as a run file and references from the history row."""

    _runstream_media = True
    kind = "media"
    """The folder under ``media/`` and W&B's ``_type`` stem (``image`` → ``image-file``)."""
    ext = "bin"
    folder = ""
    """The folder under ``media/`` (default: ``kind`` + ``s``)."""

    def _bytes(self) -> bytes:
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        return {}

    def to_json(self, run: Any = None, key: str = "media", step: int = 0) -> dict[str, Any]:
        """The history reference; with a run, the bytes are written and uploaded first."""
        data = self._bytes()
        sha = hashlib.sha256(data).hexdigest()
        path = f"media/{self.folder or self.kind + 's'}/{_file_key(key)}_{step}_{sha[:8]}.{self.ext}"
        if run is not None:
            _store(run, path, data)
        ref = {"_type": f"{self.kind}-file", "path": path, "sha256": sha, "size": len(data), "format": self.ext}
        caption = getattr(self, "caption", None)
        if caption is not None:
            ref["caption"] = str(caption)
        ref.update(self._meta())
        return ref


def _file_key(key: str) -> str:
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p).lstrip(".") or "_" for p in key.split("/")]
    return "/".join(p[:100] for p in parts)


def _store(run: Any, name: str, data: bytes) -> None:
    """Write ``data`` as the run file ``name`` and hand it to the uploader (spooled first)."""
    dest = Path(run.dir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    run.save(str(dest), base_path=str(run.dir), policy="now")


# -- images ---------------------------------------------------------------------------------------


def png_bytes(pixels: bytes, width: int, height: int, channels: int) -> bytes:
    """An 8-bit PNG of ``pixels`` (rows top to bottom, ``channels`` 1, 2, 3 or 4 bytes a pixel)."""
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _to_uint8(array: Any) -> Any:
    """A numpy array → uint8, W&B's way: floats are taken as 0..1 (scaled by 255) unless their values
    exceed 1, then as 0..255; values are clipped."""
    import numpy as np

    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = a.astype(np.float64)
    if np.issubdtype(np.asarray(array).dtype, np.floating) and a.size and np.nanmax(a) <= 1.0:
        a = a * 255.0
    return np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)


def _hwc(array: Any) -> Any:
    """Channels last: ``HxW``, ``HxWxC``; a ``CxHxW`` array (torch's layout) is transposed."""
    a = array
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise UsageError(f"Image: an array must be HxW, HxWxC or CxHxW with 1, 3 or 4 channels, not shape {a.shape}")
    return a


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) of PNG, GIF or JPEG bytes; (None, None) for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return int(w), int(h)
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None, None


class Image(Media):
    """An image: a numpy array (``HxW``, ``HxWxC`` or ``CxHxW``; floats as 0..1), a PIL image, a torch
    tensor, or the path of an image file (stored byte for byte).

    Args:
        data_or_path: the image.
        mode: accepted for W&B's signature (PIL mode names); arrays are stored as they are.
        caption: shown under the image.
        grouping, classes, boxes, masks: accepted; not stored yet.
    """

    kind = "image"

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None, boxes: Any = None, masks: Any = None,
                 file_type: str | None = None, normalize: bool = True) -> None:
        self.caption = caption
        self.ext = "png"
        if isinstance(data_or_path, (str, os.PathLike)):
            path = Path(data_or_path)
            if not path.is_file():
                raise UsageError(f"Image: {os.fspath(data_or_path)} is not a file")
            self._data = path.read_bytes()
            self.ext = path.suffix.lower().lstrip(".") or "bin"
            if self.ext == "jpeg":
                self.ext = "jpg"
        elif hasattr(data_or_path, "save") and hasattr(data_or_path, "size") and hasattr(data_or_path, "mode"):
            buf = io.BytesIO()  # a PIL image: its own encoder
            data_or_path.save(buf, format="PNG")
            self._data = buf.getvalue()
        elif hasattr(data_or_path, "savefig"):
            self._data = _figure_png(data_or_path)
        else:
            array = data_or_path
            if hasattr(array, "detach"):  # a torch tensor
                array = array.detach().cpu().numpy()
            try:
                import numpy  # noqa: F401
            except ImportError:
                raise UsageError("Image: arrays need numpy (pip install numpy); or pass a file path") from None
            a = _hwc(_to_uint8(array))
            import numpy as np

            channels = 1 if a.ndim == 2 else a.shape[2]
            self._data = png_bytes(np.ascontiguousarray(a).tobytes(), a.shape[1], a.shape[0], channels)
        self.width, self.height = image_size(self._data)

    def _bytes(self) -> bytes:
        return self._data

    def _meta(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height}


def _figure_png(figure: Any) -> bytes:
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    return buf.getvalue()


# -- tables ---------------------------------------------------------------------------------------


class Table(Media):
    """Rows and named columns, stored as Parquet (``table-file``).

    Args:
        columns: column names (default ``Column1``...).
        data: rows, each a list with one value per column (also ``rows=``).
        dataframe: a pandas DataFrame (its columns and rows).

    Cells may be numbers, text, booleans, None, lists/dicts (stored as JSON text) or media
    (``Image`` ...: stored as files, the cell holds the reference's JSON).
    """

    kind = "table"
    ext = "parquet"

    def __init__(self, columns: Sequence[str] | None = None, data: Sequence[Sequence[Any]] | None = None,
                 rows: Sequence[Sequence[Any]] | None = None, dataframe: Any = None,
                 allow_mixed_types: bool = False, **_: Any) -> None:
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            cells = dataframe.astype(object)
            data = cells.where(cells.notna(), None).itertuples(index=False, name=None)  # NaN/NA → null
        rows = data if data is not None else rows
        rows = [list(r) for r in rows] if rows is not None else []
        if columns is None:
            width = len(rows[0]) if rows else 0
            columns = [f"Column{i + 1}" for i in range(width)]
        self.columns = [str(c) for c in columns]
        if len(set(self.columns)) != len(self.columns):
            raise UsageError(f"Table: column names must be unique, not {self.columns}")
        self.data: list[list[Any]] = []
        for r in rows:
            self.add_data(*r)

    def add_data(self, *row: Any) -> None:
        """Append a row (one value per column)."""
        if len(row) != len(self.columns):
            raise UsageError(f"Table.add_data: this table has {len(self.columns)} columns "
                             f"({', '.join(self.columns)}), the row has {len(row)} values")
        self.data.append(list(row))

    def add_column(self, name: str, data: Sequence[Any]) -> None:
        """Add a column (one value per existing row)."""
        if name in self.columns:
            raise UsageError(f"Table.add_column: there is already a column {name!r}")
        values = list(data)
        if self.data and len(values) != len(self.data):
            raise UsageError(f"Table.add_column: {len(values)} values for {len(self.data)} rows")
        if not self.data:
            self.data = [[] for _ in values]
        self.columns.append(str(name))
        for r, v in zip(self.data, values, strict=True):
            r.append(v)

    def get_column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.data]

    def to_json(self, run: Any = None, key: str = "table", step: int = 0) -> dict[str, Any]:
        self._run, self._key, self._step = run, key, step
        return super().to_json(run, key, step)

    def _cell(self, v: Any, col: int) -> Any:
        if isinstance(v, Media):
            run = getattr(self, "_run", None)
            return json.dumps(v.to_json(run, f"{getattr(self, '_key', 'table')}/{self.columns[col]}",
                                        getattr(self, "_step", 0)), sort_keys=True)
        from .broker.codec import plain_value

        v = plain_value(v)
        if isinstance(v, (list, tuple, dict)):
            return json.dumps(v, default=str)
        return v

    def _arrow(self) -> Any:
        import pyarrow as pa

        arrays = []
        for i in range(len(self.columns)):
            values = [self._cell(r[i], i) for r in self.data]
            try:
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        return pa.table(arrays, names=self.columns) if self.columns else pa.table({})

    def _bytes(self) -> bytes:
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(self._arrow(), buf)
        return buf.getvalue()

    def _meta(self) -> dict[str, Any]:
        return {"nrows": len(self.data), "ncols": len(self.columns), "columns": list(self.columns)}


# -- histograms -----------------------------------------------------------------------------------


class Histogram:
    """A histogram, kept in the history row (``_type: histogram``): ``bins`` edges (n + 1) and
    ``values`` counts (n).

    Args:
        sequence: numbers to bin (``num_bins`` equal-width bins over their range; NaN and
            infinities are left out).
        np_histogram: ``(counts, edges)`` as ``numpy.histogram`` returns them, taken as they are.
        num_bins: 1 to 512 (default 64).
    """

    _runstream_media = True

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or not 1 <= num_bins <= MAX_BINS:
            raise UsageError(f"Histogram: num_bins must be 1 to {MAX_BINS}, not {num_bins!r}")
        if np_histogram is not None:
            counts, edges = (list(map(float, x)) for x in np_histogram)
            if len(edges) != len(counts) + 1:
                raise UsageError("Histogram: np_histogram must be (counts, edges) with one more edge than counts")
            if len(counts) > MAX_BINS:
                raise UsageError(f"Histogram: at most {MAX_BINS} bins, not {len(counts)}")
        elif sequence is not None:
            if hasattr(sequence, "detach"):
                sequence = sequence.detach().cpu().numpy()
            flat = getattr(sequence, "ravel", None)
            seq = flat().tolist() if callable(flat) else list(sequence)
            values = [float(v) for v in seq if v is not None and math.isfinite(float(v))]
            counts, edges = _bin(values, num_bins)
        else:
            raise UsageError("Histogram needs a sequence or np_histogram=(counts, edges)")
        self.histogram = [int(c) if float(c).is_integer() else c for c in counts]
        self.bins = edges

    def to_json(self, run: Any = None, key: str = "", step: int = 0) -> dict[str, Any]:
        return {"_type": "histogram", "values": self.histogram, "bins": self.bins, "nbins": len(self.histogram)}


def _bin(values: list[float], n: int) -> tuple[list[float], list[float]]:
    if not values:
        return [0.0] * n, [float(i) / n for i in range(n + 1)]
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5  # numpy's choice for a single value
    width = (hi - lo) / n
    edges = [lo + i * width for i in range(n)] + [hi]
    counts = [0.0] * n
    for v in values:
        i = min(int((v - lo) / width), n - 1)
        counts[i] += 1
    return counts, edges


# -- audio, video, html, plotly -------------------------------------------------------------------


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """16-bit PCM WAV of float samples in -1..1 (``N`` mono or ``N x channels``)."""
    import wave

    import numpy as np

    a = np.asarray(samples)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise UsageError(f"Audio: samples must be N or N x channels, not shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        a = (np.clip(a, -1.0, 1.0) * 32767).round().astype("<i2")
    else:
        a = a.astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.ascontiguousarray(a).tobytes())
    return buf.getvalue()


class Audio(Media):
    """Sound: a file path (stored byte for byte) or a numpy array of samples (``sample_rate``
    needed; written as 16-bit WAV)."""

    kind = "audio"
    folder = "audio"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None) -> None:
        self.caption = caption
        self.sample_rate = sample_rate
        if isinstance(data_or_path, (str, os.PathLike)):
            path = Path(data_or_path)
            if not path.is_file():
                raise UsageError(f"Audio: {os.fspath(data_or_path)} is not a file")
            self._data = path.read_bytes()
            self.ext = path.suffix.lower().lstrip(".") or "bin"
        else:
            if sample_rate is None:
                raise UsageError("Audio: an array of samples needs sample_rate=")
            self._data = wav_bytes(data_or_path, sample_rate)
            self.ext = "wav"

    def _bytes(self) -> bytes:
        return self._data

    def _meta(self) -> dict[str, Any]:
        return {} if self.sample_rate is None else {"sample_rate": self.sample_rate}


class Video(Media):
    """A video: a file path (``mp4``, ``webm``, ``gif``, ...; stored byte for byte) or a numpy array
    ``T x C x H x W`` (W&B's layout) of frames, written as an animated PNG at ``fps``
    (browsers play it; no ffmpeg needed)."""

    kind = "video"

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: int = 4, format: str | None = None) -> None:
        self.caption = caption
        self.fps = fps
        if isinstance(data_or_path, (str, os.PathLike)):
            path = Path(data_or_path)
            if not path.is_file():
                raise UsageError(f"Video: {os.fspath(data_or_path)} is not a file")
            self._data = path.read_bytes()
            self.ext = format or path.suffix.lower().lstrip(".") or "bin"
            self.width, self.height = image_size(self._data)
        else:
            if format not in (None, "png", "apng"):
                raise UsageError(f"Video: arrays are written as animated PNG; format={format!r} needs a file")
            self._data, self.width, self.height = apng_bytes(data_or_path, fps)
            self.ext = "png"

    def _bytes(self) -> bytes:
        return self._data

    def _meta(self) -> dict[str, Any]:
        return {"fps": self.fps, "width": self.width, "height": self.height}


def apng_bytes(frames: Any, fps: int) -> tuple[bytes, int, int]:
    """An animated PNG of ``frames`` (``T x C x H x W``, W&B's layout)."""
    import numpy as np

    a = np.asarray(frames)
    if a.ndim != 4:
        raise UsageError(f"Video: frames must be T x C x H x W, not shape {a.shape}")
    a = a.transpose(0, 2, 3, 1)
    a = _to_uint8(a)
    t, h, w, c = a.shape
    if c not in (1, 3, 4):
        raise UsageError(f"Video: 1, 3 or 4 channels, not {c}")
    color = {1: 0, 3: 2, 4: 6}[c]
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)),
           _chunk(b"acTL", struct.pack(">II", t, 0))]
    seq = 0
    for i in range(t):
        raw = b"".join(b"\x00" + np.ascontiguousarray(a[i, y]).tobytes() for y in range(h))
        data = zlib.compress(raw, 6)
        out.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, w, h, 0, 0, 1, max(1, int(fps)), 0, 0)))
        seq += 1
        if i == 0:
            out.append(_chunk(b"IDAT", data))
        else:
            out.append(_chunk(b"fdAT", struct.pack(">I", seq) + data))
            seq += 1
    out.append(_chunk(b"IEND", b""))
    return b"".join(out), w, h


class Html(Media):
    """An HTML page (a string, or the path of a file): shown in a sandboxed frame with no scripts."""

    kind = "html"
    folder = "html"
    ext = "html"

    def __init__(self, data: Any, inject: bool = True) -> None:
        if isinstance(data, os.PathLike) or (isinstance(data, str) and len(data) < 4096 and os.path.isfile(data)):
            self._data = Path(data).read_bytes()
        elif isinstance(data, str):
            self._data = data.encode()
        elif hasattr(data, "read"):
            text = data.read()
            self._data = text.encode() if isinstance(text, str) else bytes(text)
        else:
            raise UsageError(f"Html takes a string, a file path or a file object, not {type(data).__name__}")

    def _bytes(self) -> bytes:
        return self._data


class Plotly(Media):
    """A plotly figure (its JSON: data and layout), drawn by the web app's plotly.js."""

    kind = "plotly"
    folder = "plotly"
    ext = "plotly.json"

    def __init__(self, val: Any) -> None:
        if hasattr(val, "savefig") and not hasattr(val, "to_plotly_json"):
            raise UsageError("Plotly takes a plotly figure; log a matplotlib figure directly (stored as an image)")
        to_json = getattr(val, "to_json", None)
        if callable(to_json):
            self._data = to_json().encode()
        elif isinstance(val, Mapping):
            self._data = json.dumps(val, default=str).encode()
        else:
            raise UsageError(f"Plotly takes a plotly figure or its dict, not {type(val).__name__}")

    def _bytes(self) -> bytes:
        return self._data


# -- log() -------------------------------------------------------------------------------------------


def _convert(value: Any) -> Any:
    """A figure passed to ``log()`` directly: matplotlib → Image (PNG), plotly → Plotly; else None."""
    mod = type(value).__module__ or ""
    if mod.startswith("plotly") and hasattr(value, "to_json"):
        return Plotly(value)
    if mod.startswith("matplotlib"):
        fig = value if hasattr(value, "savefig") else getattr(value, "figure", None) or getattr(value, "gcf", None)
        if callable(fig):
            fig = fig()
        if fig is not None and hasattr(fig, "savefig"):
            return Image(fig)
    return None


def has_media(data: Mapping[str, Any]) -> bool:
    """Whether a row holds anything :func:`resolve` turns into a reference."""
    for v in data.values():
        if isinstance(v, (Media, Histogram)) or (isinstance(v, Mapping) and has_media(v)):
            return True
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, Media) for x in v):
            return True
        if _convert(v) is not None:
            return True
    return False


def resolve(run: Any, data: Mapping[str, Any], step: int, prefix: str = "") -> dict[str, Any]:
    """A row with its media stored and replaced by references (nested dicts too)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        converted = _convert(v)
        if converted is not None:
            v = converted
        if isinstance(v, (Media, Histogram)):
            out[k] = v.to_json(run, key, step)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Media) for x in v):
            items = [x.to_json(run, f"{key}/{i}", step) for i, x in enumerate(v)]
            kinds = {x["_type"] for x in items}
            out[k] = {"_type": "images" if kinds == {"image-file"} else "media-list", "count": len(items),
                      "items": items}
        elif isinstance(v, Mapping) and "_type" not in v:
            out[k] = resolve(run, v, step, key + ".")
        else:
            out[k] = v
    return out
