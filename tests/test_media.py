"""``runstream.media`` without a run: the encoders (PNG, WAV, APNG), sizes, histograms, tables, and
how a row's media become references (pure; the stored round trips are in test_wandb_compat.py)."""

from __future__ import annotations

import io
import struct
import wave
import zlib

import numpy as np
import pytest

from runstream.broker.codec import flatten
from runstream.errors import UsageError
from runstream.media import Histogram, Html, Image, Table, Video, apng_bytes, image_size, png_bytes, wav_bytes


def _png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, colour type, raw scanlines) of a PNG we wrote (one IDAT)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body)
        chunks.setdefault(tag, body)
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    return w, h, color, zlib.decompress(chunks[b"IDAT"])


def test_png_of_an_array_holds_its_pixels() -> None:
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    w, h, color, raw = _png_pixels(Image(a)._bytes())
    assert (w, h, color) == (3, 2, 2)
    assert raw == b"\x00" + a[0].tobytes() + b"\x00" + a[1].tobytes()
    gray = Image(np.array([[0.0, 1.0]]))  # floats are 0..1
    assert _png_pixels(gray._bytes())[3] == b"\x00\x00\xff"
    chw = Image(np.zeros((3, 4, 5), np.uint8))  # torch's layout
    assert (chw.width, chw.height) == (5, 4)
    with pytest.raises(UsageError, match="shape"):
        Image(np.zeros((2, 2, 7)))


def test_image_sizes_of_png_gif_and_jpeg() -> None:
    assert image_size(png_bytes(bytes(12), 2, 2, 3)) == (2, 2)
    assert image_size(b"GIF89a" + struct.pack("<HH", 7, 9) + bytes(8)) == (7, 9)
    jpeg = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"JF" + b"\xff\xc0" + struct.pack(">HBHH", 11, 8, 6, 10)
    assert image_size(jpeg + bytes(8)) == (10, 6)
    assert image_size(b"not an image") == (None, None)


def test_histograms_bin_like_numpy() -> None:
    values = np.random.default_rng(1).normal(size=500)
    counts, edges = np.histogram(values, bins=12)
    h = Histogram(values, num_bins=12)
    assert h.histogram == counts.tolist()
    assert h.bins == pytest.approx(edges.tolist(), abs=1e-12)
    assert Histogram([3.0, 3.0]).to_json()["bins"][0] == 2.5  # one value: numpy's ±0.5 range
    assert Histogram([1.0, float("nan"), float("inf"), 2.0], num_bins=1).histogram == [2]
    given = Histogram(np_histogram=([1, 2], [0.0, 1.0, 2.0])).to_json()
    assert given == {"_type": "histogram", "values": [1, 2], "bins": [0.0, 1.0, 2.0], "nbins": 2}
    for bad in (0, 513, True):
        with pytest.raises(UsageError, match="num_bins"):
            Histogram([1.0], num_bins=bad)
    with pytest.raises(UsageError, match="one more edge"):
        Histogram(np_histogram=([1, 2], [0.0, 1.0]))


def test_tables_check_their_shape() -> None:
    t = Table(columns=["a", "b"])
    t.add_data(1, "x")
    with pytest.raises(UsageError, match="has 2 columns"):
        t.add_data(1)
    with pytest.raises(UsageError, match="already a column"):
        t.add_column("a", [1])
    with pytest.raises(UsageError, match="1 rows"):
        t.add_column("c", [1, 2])
    t.add_column("c", [[1, 2]])
    assert t.get_column("c") == [[1, 2]]
    assert Table(data=[[1, 2]]).columns == ["Column1", "Column2"]
    import pyarrow.parquet as pq

    assert pq.read_table(io.BytesIO(t._bytes())).to_pylist() == [{"a": 1, "b": "x", "c": "[1, 2]"}]
    assert t.to_json()["columns"] == ["a", "b", "c"]


def test_wav_and_apng() -> None:
    data = wav_bytes(np.array([0.0, 1.0, -1.0]), 8000)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getframerate(), w.readframes(3)) == (1, 8000, struct.pack("<3h", 0, 32767, -32767))
    frames = np.zeros((3, 1, 2, 4), np.uint8)
    png, w, h = apng_bytes(frames, 5)
    assert (w, h) == (4, 2) and png.count(b"fcTL") == 3 and png.count(b"fdAT") == 2 and b"acTL" in png
    assert Video(frames, fps=5).to_json()["format"] == "png"


def test_a_media_reference_is_one_value_never_flattened() -> None:
    ref = Html("<p>x</p>").to_json(None, "page", 3)
    assert ref["_type"] == "html-file" and ref["path"].startswith("media/html/page_3_")
    assert flatten({"val": {"page": ref, "loss": 1.0}}) == {"val.page": ref, "val.loss": 1.0}
