"""Prompt text -> T5 token ids and mask, as LlamaGen's `T5Embedder.get_text_embeddings`.

`clean_caption` is LlamaGen's (and PixArt's / DeepFloyd IF's) caption cleaning, applied twice
(`preprocess`), with the same libraries it uses for the fuzzy parts (ftfy's text repair,
BeautifulSoup's HTML stripping). The SentencePiece model (`spiece.model` of the T5 folder)
runs through the `sentencepiece` library; ids are the pieces' ids plus `</s>` (1), truncated
to `max_length` (the `</s>` kept last) and right-padded with 0 and mask 0, which is what
Hugging Face's T5 tokenizer returns for `padding='max_length', truncation=True`.
"""
from __future__ import annotations

import html
import os
import re
import urllib.parse

import numpy as np

from argen_jax.errors import CheckpointError

MAX_LENGTH = 120  # LlamaGen's caption length (cls_token_num / t5_feature_max_len)
PAD_ID, EOS_ID = 0, 1

_CJK_RANGES = ("\u31c0-\u31ef", "\u31f0-\u31ff", "\u3200-\u32ff", "\u3300-\u33ff",
               "\u3400-\u4dbf", "\u4dc0-\u4dff", "\u4e00-\u9fff")
_DASHES = ("\u002D\u058A\u05BE\u1400\u1806\u2010-\u2015\u2E17\u2E1A\u2E3A\u2E3B\u2E40\u301C"
           "\u3030\u30A0\uFE31\uFE32\uFE58\uFE63\uFF0D")
_URL_TAIL = r"[a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b\/?(?!@)))"
_BAD_PUNCT = re.compile(r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]{1,}")
_MEDIA = r"(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)"

# (pattern, replacement) in order, before the HTML pass / after it (LlamaGen's language/t5.py).
_BEFORE_HTML = (
    (r"<person>", "person"),
    (r"\b((?:https?:(?:\/{1,3}|[a-zA-Z0-9%])|" + _URL_TAIL, ""),
    (r"\b((?:www:(?:\/{1,3}|[a-zA-Z0-9%])|" + _URL_TAIL, ""),
)
_AFTER_HTML = (
    (r"@[\w\d]+\b", ""),
    *((f"[{r}]+", "") for r in _CJK_RANGES),
    (f"[{_DASHES}]+", "-"),
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (r"[\S]+\." + _MEDIA, ""),  # file names
    (r"[\"\']{2,}", r'"'),
    (r"[\.]{2,}", r" "),
    (_BAD_PUNCT, r" "),
    (r"\s+\.\s+", r" "),
)
_AFTER_BASIC = (
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),
    (r"\b\d+[a-zA-Z]+\d+\b", ""),
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (r"\b" + _MEDIA + r"(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", r" "),
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),
    (r"\b\s+\:\s+", r": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),
    (r"^[\'\_,\-\:;]", r""),
    (r"[\'\_,\-\:\-\+]$", r""),
    (r"^\.\S+$", ""),
)
_SEPARATORS = re.compile(r"(?:\-|\_)")


def _apply(rules, text: str) -> str:
    for pattern, repl in rules:
        text = re.sub(pattern, repl, text)
    return text


def clean_caption(caption) -> str:
    """One pass of LlamaGen's caption cleaning (lower case, URLs / HTML / ids / noise out)."""
    import ftfy
    from bs4 import BeautifulSoup

    text = urllib.parse.unquote_plus(str(caption)).strip().lower()
    text = _apply(_BEFORE_HTML, text)
    text = BeautifulSoup(text, features="html.parser").text
    text = _apply(_AFTER_HTML, text)
    if len(_SEPARATORS.findall(text)) > 3:  # this-is-a-slug / this_is_a_slug
        text = _SEPARATORS.sub(" ", text)
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _apply(_AFTER_BASIC, text).strip()


def preprocess(text, clean: bool = True) -> str:
    """LlamaGen's `text_preprocessing`: the cleaning twice, or only lower().strip()."""
    return clean_caption(clean_caption(text)) if clean else str(text).lower().strip()


class T5Tokenizer:
    """A T5 folder's `spiece.model` through `sentencepiece`, padded / truncated to a length."""

    def __init__(self, spiece_path: str, max_length: int = MAX_LENGTH, clean: bool = True):
        import sentencepiece

        if os.path.isdir(spiece_path):
            spiece_path = os.path.join(spiece_path, "spiece.model")
        if not os.path.isfile(spiece_path):
            raise CheckpointError(f"no SentencePiece model at {spiece_path!r}")
        self.sp = sentencepiece.SentencePieceProcessor(model_file=spiece_path)
        self.max_length = max_length
        self.clean = clean

    def __call__(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """texts (list of str) -> ids [N, L] int32, mask [N, L] int32 (1 on tokens + </s>)."""
        n, length = len(texts), self.max_length
        ids = np.full((n, length), PAD_ID, np.int32)
        mask = np.zeros((n, length), np.int32)
        for i, text in enumerate(texts):
            pieces = self.sp.encode(preprocess(text, self.clean))[:length - 1] + [EOS_ID]
            ids[i, :len(pieces)] = pieces
            mask[i, :len(pieces)] = 1
        return ids, mask
