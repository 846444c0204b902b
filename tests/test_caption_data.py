"""Image-caption sources (LlamaGen's jsonl, img2dataset tars): unusable pairs are skipped and
counted, never a crash and never silent."""
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from argen_jax.data.captions import JsonlCaptionSource, TarCaptionSource, caption_source
from argen_jax.errors import DataError


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _add(tf, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_jsonl_skips_and_counts(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(10))
    (tmp_path / "b.png").write_bytes(b"not an image")
    lines = [{"image_path": "a.png", "text": "a red circle"},
             {"image_path": "b.png", "text": ["a damaged one", "long caption"]},
             {"image_path": "a.png", "text": "  "},
             {"image_path": "gone.png", "caption": "missing"}]
    (tmp_path / "part0.jsonl").write_text("\n".join(json.dumps(x) for x in lines)
                                          + "\n{not json\n")
    src = caption_source(str(tmp_path))
    assert isinstance(src, JsonlCaptionSource) and len(src) == 2
    assert dict(src.skipped) == {"empty_caption": 1, "missing_image": 1, "bad_line": 1}
    image, cap = src[0]
    assert cap == "a red circle" and np.asarray(image)[0, 0, 0] == 10
    image, cap = src[1]  # damaged: the next readable pair, counted
    assert cap == "a red circle" and src.skipped["damaged_image"] == 1


def test_tars_skip_and_count(tmp_path):
    with tarfile.open(tmp_path / "00000.tar", "w") as tf:
        _add(tf, "000.png", _png(1))
        _add(tf, "000.txt", b"one blue square")
        _add(tf, "000.json", b"{}")
        _add(tf, "001.txt", b"no image here")
        _add(tf, "002.png", _png(2))
        _add(tf, "002.txt", b"")
        _add(tf, "003.jpg", b"\xff\xd8 broken jpeg")
        _add(tf, "003.txt", b"a damaged image")
    with tarfile.open(tmp_path / "00001.tar", "w") as tf:
        _add(tf, "100.png", _png(3))
        _add(tf, "100.txt", b"two green circles")
        _add(tf, "101.png", _png(4) * 50)
        _add(tf, "101.txt", b"cut off")
    whole = (tmp_path / "00001.tar").read_bytes()
    (tmp_path / "00001.tar").write_bytes(whole[:2560 + 100])  # cut inside member 101.png
    src = caption_source(str(tmp_path))
    assert isinstance(src, TarCaptionSource)
    assert [src.caption(i) for i in range(len(src))] == ["one blue square", "a damaged image",
                                                         "two green circles"]
    assert src.skipped["missing_image"] == 1 and src.skipped["empty_caption"] == 1
    assert src.skipped["damaged_member"] == 1
    assert np.asarray(src[2][0])[0, 0, 0] == 3
    image, cap = src[1]  # the damaged jpeg: the next pair
    assert cap == "two green circles" and src.skipped["damaged_image"] == 1


def test_nothing_usable_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no .jsonl"):
        JsonlCaptionSource(str(tmp_path))
    (tmp_path / "x.jsonl").write_text(json.dumps({"image_path": "gone.png", "text": "t"}))
    with pytest.raises(DataError, match="missing_image"):
        caption_source(str(tmp_path))
