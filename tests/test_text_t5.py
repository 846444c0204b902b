"""The Flax T5 encoder and tokenizer against Hugging Face's, on an offline T5 folder (a
SentencePiece model trained on a few captions, a random small gated-GELU config)."""
import copy
import io
import json
import os

import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers

from argen_jax.errors import CheckpointError
from argen_jax.text import hf_folder, tokenizer
from argen_jax.text.__main__ import main as text_main
from argen_jax.text.encoder import TextEncoder
from argen_jax.text.t5 import relative_position_buckets

CAPTIONS = [
    "a red circle on the left of a blue square",
    "two green triangles above a small yellow circle",
    "A photo of a cat sitting on a wooden table next to a window.",
    "three large purple squares in a row",
    "an orange star below a white heart, drawn on a black background",
    "one tiny circle",
]
PROMPTS = [
    "A RED circle, left of a blue square!!",
    "Visit https://www.example.com/shop for <b>two</b> green triangles &amp; more",
    "one tiny circle",
    " ".join(["a red circle and a blue square"] * 30),  # > 120 tokens: truncated
]


def _spiece(path):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS * 20), model_writer=buf, vocab_size=60,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5")
    folder = str(root / "t5")
    os.makedirs(folder)
    _spiece(os.path.join(folder, "spiece.model"))
    tok = transformers.T5Tokenizer(vocab_file=os.path.join(folder, "spiece.model"),
                                   extra_ids=100, legacy=True)
    tok.save_pretrained(folder)
    config = transformers.T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6)
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(config).eval()
    with torch.no_grad():  # norms away from 1 so a misplaced scale shows
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(folder)  # model.safetensors
    sharded = str(root / "t5_bin")
    model.save_pretrained(sharded, safe_serialization=False, max_shard_size="40KB")
    assert len(hf_folder.weight_files(sharded)) > 1
    tok.save_pretrained(sharded)
    return {"folder": folder, "sharded": sharded, "model": model, "tok": tok}


def _hf_features(t5, texts):
    batch = t5["tok"]([tokenizer.preprocess(t) for t in texts], max_length=120,
                      padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = t5["model"](input_ids=batch["input_ids"],
                          attention_mask=batch["attention_mask"]).last_hidden_state
    return out.numpy(), batch["input_ids"].numpy(), batch["attention_mask"].numpy()


def test_buckets_match_hugging_face():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(150)[None, :] - torch.arange(150)[:, None]
    for nb, md in ((32, 128), (8, 20), (6, 7)):
        ref = T5Attention._relative_position_bucket(rel, True, nb, md).numpy()
        np.testing.assert_array_equal(relative_position_buckets(150, 150, nb, md), ref)


def test_tokenizer_gives_hugging_face_ids(t5_folder):
    ours_ids, ours_mask = tokenizer.T5Tokenizer(t5_folder["folder"])(PROMPTS)
    _, hf_ids, hf_mask = _hf_features(t5_folder, PROMPTS)
    np.testing.assert_array_equal(ours_ids, hf_ids)
    np.testing.assert_array_equal(ours_mask, hf_mask)
    assert ours_mask[3].sum() == 120 and ours_ids[3, 119] == tokenizer.EOS_ID  # truncated
    fast = transformers.T5TokenizerFast.from_pretrained(t5_folder["folder"])
    fb = fast([tokenizer.preprocess(t) for t in PROMPTS], max_length=120,
              padding="max_length", truncation=True, return_tensors="np")
    np.testing.assert_array_equal(ours_ids, fb["input_ids"])  # LlamaGen's AutoTokenizer


def test_clean_caption_as_llamagen():
    # LlamaGen's cleaning: lower case, URL / HTML / entity / id noise out, twice.
    assert tokenizer.preprocess("Visit https://www.example.com/shop for <b>Two</b> cats "
                                "&amp; more") == "visit for two cats more"
    assert tokenizer.preprocess("\"A photo of a dog.\"") == "a photo of a dog."
    assert tokenizer.preprocess("this-is-a-very-long-slug") == "this is a very long slug"
    assert tokenizer.preprocess("IMG_2034.jpg a cat  #123") == "a cat"
    assert tokenizer.preprocess(" Mixed CASE ", clean=False) == "mixed case"


@pytest.mark.parametrize("which", ["folder", "sharded"])
def test_encoder_equals_hugging_face(t5_folder, which):
    enc = TextEncoder(t5_folder[which])
    emb, mask = enc.features(PROMPTS)
    ref, _, ref_mask = _hf_features(t5_folder, PROMPTS)
    assert emb.shape == (4, 120, 32) and emb.dtype == np.float32
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(emb, ref, atol=1e-5, rtol=1e-5)


def test_bfloat16_safetensors_and_cli(t5_folder, tmp_path):
    bf = str(tmp_path / "bf16")
    copy.deepcopy(t5_folder["model"]).to(torch.bfloat16).save_pretrained(bf)
    t5_folder["tok"].save_pretrained(bf)
    _, params = hf_folder.load(bf)
    want = t5_folder["model"].encoder.block[1].layer[0].SelfAttention.q.weight.detach()
    got = params["block_1"]["q"]["kernel"].astype(np.float32).reshape(32, 32).T
    np.testing.assert_array_equal(got, want.to(torch.bfloat16).float().numpy())
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS[:2]) + "\n\n")
    out = str(tmp_path / "x.npz")
    assert text_main(["features", f"--t5={t5_folder['folder']}", f"--prompts={prompts}",
                      f"--out={out}", "--batch_size=1"]) == 0
    with np.load(out) as f:
        ref, _, _ = _hf_features(t5_folder, PROMPTS[:2])
        np.testing.assert_allclose(f["emb"], ref, atol=1e-5, rtol=1e-5)
        assert f["mask"].shape == (2, 120)
    assert text_main(["features", f"--t5={tmp_path}", f"--prompts={prompts}",
                      f"--out={out}"]) == 2  # no weights: one-line error


def test_missing_tensor_is_a_checkpoint_error(t5_folder, tmp_path):
    config = hf_folder.T5Config.from_folder(t5_folder["folder"])
    sd = hf_folder.read_state_dict(t5_folder["folder"])
    del sd["encoder.final_layer_norm.weight"]
    with pytest.raises(CheckpointError, match="final_layer_norm"):
        hf_folder.params_from_state_dict(sd, config)
    (tmp_path / "config.json").write_text(json.dumps({"feed_forward_proj": "gated-silu"}))
    with pytest.raises(CheckpointError, match="gated-silu"):
        hf_folder.T5Config.from_folder(str(tmp_path))
