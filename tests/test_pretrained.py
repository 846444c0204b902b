"""argen_jax.pretrained: random-weight state dicts in LlamaGen's and VAR's key layouts (.npz,
scaled-down shapes) -> `convert` -> runs that `--mode=sample` and `sample` open; one-line
errors for a wrong head count and a wrong MLP width; the FID-50k protocol stopped half-way
and resumed writes the same ADM sample batch as an uninterrupted one."""
import json
import os

import chex
import numpy as np
import pytest
from PIL import Image

from argen_jax.errors import CheckpointError, ConfigError
from argen_jax.evaluation import inception, reference_stats
from argen_jax.io.checkpoint import restore_params
from argen_jax.io.run_dir import load_run_config
from argen_jax.layers.quantizer.resample import torch_bicubic_matrix
from argen_jax.layers.repeat import unstack_layers
from argen_jax.layers.vq_nets import VQModel
from argen_jax.models.vqgan import variables
from argen_jax.pretrained import convert, layouts
from argen_jax.pretrained.__main__ import main
from argen_jax.pretrained.evaluate import evaluate, open_preset
from argen_jax.run import run
from tests.test_inception import _random_state_dict as random_inception

VQ = dict(ch=8, ch_mult=(1, 2), nrb=1, z=4, codes=16, dim=4)  # factor 2, 16 codes of 4
PATCH_NUMS = (1, 2, 3, 4, 6, 8)  # VAR scales over the 8x8 latent of 16x16 images


def _save(path, shapes, seed):
    np.savez(path, **layouts.random_state_dict(shapes, seed))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("released")
    return dict(
        gpt=_save(d / "gpt.npz", layouts.llamagen_gpt_shapes(2, 32, 64, vocab=16, classes=3), 0),
        vq=_save(d / "vq.npz", layouts.llamagen_vq_shapes(**VQ), 1),
        var=_save(d / "var.npz", layouts.var_shapes(depth=2, width=16, vocab=16, code_dim=4,
                                                    classes=3, patch_nums=PATCH_NUMS), 2),
        vae=_save(d / "vae.npz", layouts.var_vae_shapes(**VQ), 3))


@pytest.fixture(scope="module")
def llamagen_run(files, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "llamagen")
    assert main(["convert", "--system=llamagen", f"--gpt={files['gpt']}",
                 f"--vq={files['vq']}", f"--out={out}", "--heads=2", "--image_size=8"]) == 0
    return out


def _grid_and_sample_mode(workdir, tmp_path, side):
    grid = str(tmp_path / "grid.png")
    assert main(["sample", f"--workdir={workdir}", "--classes=0,2", "--per_class=2",
                 "--cfg=4.0", f"--out={grid}"]) == 0
    img = Image.open(grid)
    assert min(img.size) >= 2 * side  # 2 x 2 tiles of side x side
    with open(os.path.splitext(grid)[0] + ".json") as f:
        assert json.load(f)["sampling"]["cfg_scale"] == 4.0  # the settings go with the grid
    paths = run(load_run_config(workdir), workdir, "sample")  # launch/main.py --mode=sample
    assert paths and all(os.path.exists(p) for p in paths)


def test_llamagen_convert_then_sample(files, llamagen_run, tmp_path):
    config = load_run_config(llamagen_run)
    assert (config.model.depth, config.model.width, config.model.num_heads,
            config.model.mlp_dim) == (2, 32, 2, 64)  # read from the state dict
    assert tuple(config.data.token_shape) == (4, 4) and config.data.num_classes == 3
    params, step = restore_params(llamagen_run)
    with np.load(files["gpt"]) as f:
        np.testing.assert_array_equal(params["token_embed"]["embedding"],
                                      f["tok_embeddings.weight"])
    assert step == 0
    _grid_and_sample_mode(llamagen_run, tmp_path, 8)


def test_var_convert_then_sample(files, tmp_path):
    out = str(tmp_path / "var")
    assert main(["convert", "--system=var", f"--var={files['var']}", f"--vae={files['vae']}",
                 f"--out={out}", "--heads=2", "--patch_nums=" + ",".join(map(str, PATCH_NUMS))
                 ]) == 0
    config = load_run_config(out)
    assert (config.model.depth, config.model.width, config.model.num_heads) == (2, 16, 2)
    assert tuple(config.data.scales) == PATCH_NUMS and config.converted.preset == "var"
    assert config.sample.top_k == 900 and config.sample.cfg_scale == 2.5  # VAR's FID preset
    params, _ = restore_params(out)
    with np.load(files["vae"]) as f:  # the quantizer's codebook, copied into VAR's params
        np.testing.assert_array_equal(
            params["tokenizer"]["generator"]["quantizer"]["vq"]["codebook"],
            f["quantize.embedding.weight"])
    _grid_and_sample_mode(out, tmp_path, 16)


def test_scanned_conversions_hold_the_stacked_layers_and_sample_the_same(files, llamagen_run,
                                                                         tmp_path):
    """--scan_layers writes the scanned layout (design rule 23): its params are the unrolled
    run's stacked, and it samples the same tokens."""
    var_flags = [f"--var={files['var']}", f"--vae={files['vae']}", "--heads=2",
                 "--patch_nums=" + ",".join(map(str, PATCH_NUMS))]
    runs = {"var": [str(tmp_path / "var"), str(tmp_path / "var_scan")],
            "llamagen": [llamagen_run, str(tmp_path / "llamagen_scan")]}
    assert main(["convert", "--system=var", f"--out={runs['var'][0]}", *var_flags]) == 0
    assert main(["convert", "--system=var", f"--out={runs['var'][1]}", "--scan_layers",
                 *var_flags]) == 0
    assert main(["convert", "--system=llamagen", f"--gpt={files['gpt']}", f"--vq={files['vq']}",
                 f"--out={runs['llamagen'][1]}", "--heads=2", "--image_size=8",
                 "--scan_layers"]) == 0
    for plain, scanned in runs.values():
        assert load_run_config(scanned).model.scan_layers
        p, s = restore_params(plain)[0], restore_params(scanned)[0]
        p, s = p.get("var", p), s.get("var", s)
        assert "blocks" in s and not any(k.startswith("block_") for k in s)
        chex.assert_trees_all_equal(unstack_layers(s), p)
        tokens = []
        for run_dir in (plain, scanned):
            run, _, _ = open_preset(run_dir)
            tokens.append(np.asarray(run.sample(3, 0, batch_size=3)))
        np.testing.assert_array_equal(*tokens)


def _shaped(shapes):
    """Arrays of the right shapes without memory (the shape checks read shapes only)."""
    return {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}


def test_wrong_head_count_and_mlp_width_are_one_line_errors(files, tmp_path, capsys):
    b = _shaped(layouts.llamagen_gpt_shapes(12, 768, 2048))  # LlamaGen-B's shapes
    assert convert.llamagen_shape(b)["num_heads"] == 12  # from the size table
    with pytest.raises(CheckpointError, match=r"--heads=8 .*LlamaGen-B, which has 12 heads"):
        convert.llamagen_shape(b, heads=8)
    with pytest.raises(CheckpointError, match="LlamaGen-L has 24 layers of width 1024"):
        convert.llamagen_shape(b, size="L")
    # LlamaGen-L's shapes with the SwiGLU width of multiple_of=32 (2752, not 2816)
    lg = _shaped(layouts.llamagen_gpt_shapes(24, 1024, 2752))
    with pytest.raises(CheckpointError, match="w1.weight has 2752 rows.*multiple_of"):
        convert.llamagen_shape(lg, size="L")
    # a custom shape: heads that do not split the width, through the command line
    code = main(["convert", "--system=llamagen", f"--gpt={files['gpt']}",
                 f"--vq={files['vq']}", f"--out={tmp_path / 'x'}", "--heads=3",
                 "--image_size=8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--heads=3 does not split the width 32" in err
    assert not os.path.exists(tmp_path / "x")  # nothing written
    # one layer with another MLP width: the converter names the key and mlp_dim/multiple_of
    sd = dict(np.load(files["gpt"]))
    sd["layers.1.feed_forward.w1.weight"] = np.zeros((48, 32), np.float32)
    np.savez(tmp_path / "bad.npz", **sd)
    code = main(["convert", "--system=llamagen", f"--gpt={tmp_path / 'bad.npz'}",
                 f"--vq={files['vq']}", f"--out={tmp_path / 'y'}", "--heads=2",
                 "--image_size=8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "layers.1.feed_forward.w1.weight" in err and "multiple_of" in err
    assert not os.path.exists(tmp_path / "y")
    # VAR: heads are fixed by the depth and by scale_mul_1H11
    var = dict(np.load(files["var"]))
    with pytest.raises(CheckpointError, match="--heads=4 but blocks.0.attn.scale_mul_1H11 "
                                              "has 2 heads"):
        convert.var_shape(var, heads=4, patch_nums=PATCH_NUMS)
    v3 = layouts.var_shapes(depth=3, width=24, vocab=16, code_dim=4, classes=3,
                            patch_nums=PATCH_NUMS, heads=2)
    with pytest.raises(CheckpointError, match="VAR-d3 has 3"):
        convert.var_shape(_shaped(v3), patch_nums=PATCH_NUMS)
    var["blocks.1.ffn.fc1.weight"] = np.zeros((48, 16), np.float32)
    with pytest.raises(CheckpointError, match="blocks.1.ffn.fc1.weight is .*MLP width 64"):
        convert.var_shape(var, heads=2, patch_nums=PATCH_NUMS)


def test_stopped_evaluation_resumes_to_the_same_adm_batch(llamagen_run, tmp_path):
    kw = dict(num=10, shard_size=4, batch_size=2)
    whole = evaluate(llamagen_run, out=str(tmp_path / "whole"), **kw)
    assert whole["complete"]
    part = str(tmp_path / "part")
    first = evaluate(llamagen_run, out=part, max_shards=1, **kw)
    assert not first["complete"] and sorted(os.listdir(os.path.join(part, "samples"))) == [
        "shard_00000.npz"]
    assert not evaluate(llamagen_run, out=part, max_shards=1, **kw)["complete"]
    done = evaluate(llamagen_run, out=part, **dict(kw, batch_size=4))  # batch size: speed only
    assert done["complete"] and done["new_shards"] == 1
    a = reference_stats.read_images(whole["sample_batch"])
    b = reference_stats.read_images(done["sample_batch"])
    assert a.shape == (10, 8, 8, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    with np.load(done["sample_batch"]) as f:  # ADM layout: arr_0 images, arr_1 labels
        np.testing.assert_array_equal(f["arr_1"], np.arange(10) % 3)
    with pytest.raises(ConfigError, match="another evaluation.*seed"):
        evaluate(llamagen_run, out=part, seed=1, **kw)


def test_evaluation_scores_against_an_adm_reference_batch(llamagen_run, tmp_path):
    ext = inception.InceptionExtractor(
        inception.state_dict_to_variables(random_inception()), size=75)
    ref = str(tmp_path / "ref.npz")
    reference_stats.write_sample_batch(
        ref, np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3)).astype(np.uint8))
    res = evaluate(llamagen_run, num=10, out=str(tmp_path / "fid"), ref=ref, inception=ext,
                   shard_size=10, preset_name="llamagen_B")
    m = res["metrics"]
    assert set(m) == {f"eval_samples/{k}_inception" for k in ("fd", "precision", "recall",
                                                              "is", "sfid")}
    assert all(np.isfinite(v) for v in m.values()) and m["eval_samples/fd_inception"] > 0
    assert res["preset"] == "llamagen_B" and res["sampling"]["cfg_scale"] == 2.0
    assert res["image_size"] == 256  # LlamaGen's protocol scores at 256 whatever it samples at
    assert reference_stats.read_images(res["sample_batch"]).shape == (10, 256, 256, 3)
    with open(tmp_path / "fid" / "results.json") as f:
        assert json.load(f)["metrics"] == pytest.approx(m)


# PyTorch 2.13 `F.interpolate(torch.eye(8).reshape(8, 1, 1, 8), size=(1, 6), mode="bicubic",
# align_corners=False)`, transposed: the [6, 8] weights of its 8 -> 6 resize (LlamaGen resizes
# its 384-pixel samples to 256 this way before scoring them).
TORCH_BICUBIC_8_TO_6 = [
    [0.85648167, 0.16087967, -0.017361164, 0, 0, 0, 0, 0],
    [-0.09375, 0.59375, 0.59375, -0.09375, 0, 0, 0, 0],
    [0, -0.017360687, 0.16087949, 0.94328713, -0.086805582, 0, 0, 0],
    [0, 0, 0, -0.08680582, 0.94328684, 0.16087997, -0.017361164, 0],
    [0, 0, 0, 0, -0.09375, 0.59375, 0.59375, -0.09375],
    [0, 0, 0, 0, 0, -0.017360687, 0.16087949, 0.85648155]]


def test_samples_are_resized_like_llamagens_protocol(llamagen_run, tmp_path):
    m = torch_bicubic_matrix(8, 6)
    np.testing.assert_allclose(m, np.asarray(TORCH_BICUBIC_8_TO_6), atol=1e-6)
    run, _, _ = open_preset(llamagen_run)
    tokens = run.sample(4, 0, start_index=0, batch_size=4)  # what evaluate draws
    tok = run.family.tokenizer
    x = np.asarray(tok.model.apply(variables(tok.params), run.family.token_maps(tokens),
                                   method=VQModel.decode))  # model space, before rounding
    want = np.clip(np.round((np.einsum("ph,bhwc,qw->bpqc", m, x, m) + 1) * 127.5), 0, 255)
    res = evaluate(llamagen_run, num=4, out=str(tmp_path / "e"), shard_size=4, image_size=6)
    got = reference_stats.read_images(res["sample_batch"]).astype(np.float64)
    assert got.shape == (4, 6, 6, 3) and res["image_size"] == 6
    assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.99  # ties may round apart
    same = evaluate(llamagen_run, num=4, out=str(tmp_path / "s"), shard_size=4, image_size=8)
    plain = evaluate(llamagen_run, num=4, out=str(tmp_path / "p"), shard_size=4, image_size=0)
    assert same["image_size"] == plain["image_size"] == 8  # the run's own side: no resize
    np.testing.assert_array_equal(reference_stats.read_images(same["sample_batch"]),
                                  reference_stats.read_images(plain["sample_batch"]))


def test_two_processes_evaluate_like_one(llamagen_run, tmp_path):
    """`evaluate --distributed` on 2 processes x 2 CPU devices (each restores the tokenizer
    onto its own device, samples its rows, gathers the batch) writes the ADM batch of one
    process."""
    import subprocess
    import sys

    flags = [f"--workdir={llamagen_run}", "--num=10", "--shard_size=4", "--batch_size=4"]
    port = str(20000 + os.getpid() % 20000)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "argen_jax.pretrained", "evaluate", "--distributed", *flags,
         f"--out={tmp_path / 'two'}"],
        env={**env, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",
             "JAX_PROCESS_ID": str(i), "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        one = evaluate(llamagen_run, num=10, out=str(tmp_path / "one"), shard_size=4,
                       batch_size=4)
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    np.testing.assert_array_equal(
        reference_stats.read_images(str(tmp_path / "two" / "samples_10.npz")),
        reference_stats.read_images(one["sample_batch"]))


def test_llamagen_image_size_comes_from_the_file_name(files, tmp_path, capsys):
    """c2i_L_384.pt without --image_size used to convert silently at 256 (RoPE on the wrong
    grid): the name's side is used, a conflicting flag and a name without one are refused."""
    assert convert.llamagen_image_size("/x/c2i_L_384.pt") == 384
    assert convert.llamagen_image_size("c2i_B_256.pt", 256) == 256
    assert convert.llamagen_image_size("gpt.npz", 8) == 8
    named = tmp_path / "c2i_T_8.npz"
    named.write_bytes(open(files["gpt"], "rb").read())
    assert main(["convert", "--system=llamagen", f"--gpt={named}", f"--vq={files['vq']}",
                 f"--out={tmp_path / 'ok'}", "--heads=2"]) == 0
    assert tuple(load_run_config(str(tmp_path / "ok")).data.token_shape) == (4, 4)
    for args, want in (([f"--gpt={named}", "--image_size=16"],
                        "--image_size=16 but the file name c2i_T_8.npz says 8"),
                       ([f"--gpt={files['gpt']}"], "--image_size is required: the file name "
                        "gpt.npz does not end in the image side")):
        capsys.readouterr()
        assert main(["convert", "--system=llamagen", *args, f"--vq={files['vq']}",
                     f"--out={tmp_path / 'no'}", "--heads=2"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and want in err
        assert not os.path.exists(tmp_path / "no")


def test_sample_mode_on_a_1000_class_run_writes_a_readable_grid(files, tmp_path, caplog):
    """It wrote one column per class: a 257,001 px wide PNG for LlamaGen's 1,000 classes."""
    gpt = _save(tmp_path / "c2i_T_8.npz",
                layouts.llamagen_gpt_shapes(2, 32, 64, vocab=16, classes=1000), 0)
    out = str(tmp_path / "run")
    assert main(["convert", "--system=llamagen", f"--gpt={gpt}", f"--vq={files['vq']}",
                 f"--out={out}", "--heads=2"]) == 0
    config = load_run_config(out)
    config.sample.num = 8
    with caplog.at_level("INFO"):
        paths = run(config, out, "sample")
    assert Image.open(paths[0]).size == (8 * 9 + 1, 9 + 1)  # 8 columns of 8 px + padding
    assert "Sampling classes 0,143,285,428,571,714,856,999" in caplog.text
    config.sample.classes = "1,2"
    paths = run(config, out, "sample")
    assert Image.open(paths[0]).size == (2 * 9 + 1, 4 * 9 + 1)
