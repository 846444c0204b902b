"""Test set-up: 8 fake CPU devices so sharding is tested without accelerators.

XLA_FLAGS must be set before JAX is imported anywhere, which is why this sits at the top of
the conftest (pytest imports it before any test module).
"""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tempfile  # noqa: E402

from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU flags the launcher applies, before JAX starts (see xla_env.py)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# Tests build the same tiny programs many times (every train() call re-jits its steps):
# a persistent compilation cache turns the repeats into cache hits.
jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("ARGEN_TEST_JAX_CACHE",
                                 os.path.join(tempfile.gettempdir(), "argen_jax_test_cache")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def rng():
    return jax.random.PRNGKey(0)


# Tests marked `slow` besides those decorated so: the end-to-end ones (each >= ~8 s on one core
# of the shared 2-core machine, pytest --durations, 2026-12-08). `pytest -m "not slow"` is the
# quick first check (README); CI (launch/test.sh) runs everything.
SLOW = {
    'test_codec': ('test_command_line_round_trip_and_one_line_refusal',
        'test_rgb_mixture_round_trip_and_code_length',),
    'test_config_fuzz': ('test_random_overrides_build_or_are_refused_in_one_line',
        'test_random_overrides_of_token_models',),
    'test_image_folder': ('test_check_lists_every_unreadable_file_in_parallel',),
    'test_imagenet_pipeline': ('test_folder_to_tokenizer_to_tokens_to_llamagen',
        'test_two_processes_read_their_own_rows_of_an_image_folder',),
    'test_llamagen': ('test_family_trains_and_samples_through_the_shared_loop',),
    'test_llamagen_vq_convert': ('test_converted_vq_reproduces_llamagen_numpy_forward',),
    'test_logit_filters': ('test_filters_equal_the_reference',
        'test_property_filters_equal_the_reference',),
    'test_memory_plan': ('test_command_line_prints_one_json_line_for_var',
        'test_fsdp_splits_the_state_over_devices',),
    'test_mfu': ('test_decoder_flops_match_xla', 'test_var_flops_match_xla',),
    'test_notebooks': ('test_notebook_runs_top_to_bottom',),
    'test_parallel': ('test_sharded_matches_unsharded', 'test_two_processes_train_like_one',),
    'test_pixelcnn': ('test_bfloat16_compute_keeps_float32_params_and_logits',
        'test_pixelcnn_has_blind_spot_and_gated_has_none',
        'test_settings_defaults_validation_and_sampling_temperature',),
    'test_pixelcnnpp': ('test_causal_and_no_blind_spot',
        'test_tiny_training_run_learns_and_samples', 'test_transposed_module_shapes_and_params',),
    'test_pretrained': ('test_evaluation_scores_against_an_adm_reference_batch',
        'test_llamagen_convert_then_sample', 'test_llamagen_image_size_comes_from_the_file_name',
        'test_sample_mode_on_a_1000_class_run_writes_a_readable_grid',
        'test_samples_are_resized_like_llamagens_protocol',
        'test_scanned_conversions_hold_the_stacked_layers_and_sample_the_same',
        'test_two_processes_evaluate_like_one', 'test_var_convert_then_sample',),
    'test_quantizer': ('test_multiscale_token_shapes_and_consistency',
        'test_nearest_code_and_straight_through_identity',),
    'test_remat_scan': ('test_decoder_loss_and_gradients_unchanged',
        'test_scanned_decoder_kv_cache_sampler_equals_full_pass',
        'test_scanned_llamagen_converts_from_a_state_dict_and_samples_like_its_full_pass',
        'test_scanned_var_cache_equals_full_pass_and_is_block_causal',
        'test_tokenizer_remat_keeps_loss_and_gradients', 'test_var_loss_and_gradients_unchanged',),
    'test_sample_eval': ('test_eval_mode_scores_samples_independent_of_batch_size',),
    'test_speculative': ('test_speculative_samples_have_the_plain_samplers_distribution',),
    'test_train': ('test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one',
        'test_a_finite_blowup_stops_and_the_best_checkpoint_survives_rotation',
        'test_an_update_that_overflows_at_a_save_step_is_not_saved',
        'test_eight_device_step_equals_one_device_step',
        'test_launcher_one_line_errors_said_once', 'test_overrides_apply_to_the_runs_config_json',
        'test_resume_after_interruption_is_exact',
        'test_sigterm_saves_and_exits_75_then_the_same_command_resumes', 'test_train_eval_sample',),
    'test_transformer': ('test_bf16_kv_cache_logits_stay_within_bf16_precision',),
    'test_var': ('test_bf16_kv_cache_logits_stay_within_bf16_precision',
        'test_cached_sampler_logits_equal_full_pass', 'test_loss_metrics_per_scale',
        'test_teacher_forcing_matches_tokenizer_reconstruction',),
    'test_var_vq_convert': ('test_converted_vqvae_reproduces_var_numpy_forward',
        'test_var_converter_errors_and_coverage',),
    'test_vqgan': ('test_discriminator_starts_at_the_configured_step',
        'test_encode_decode_shapes', 'test_loss_masks_padding_examples',
        'test_perceptual_weights_from_a_local_file',
        'test_tiny_training_run_restore_and_tokenize',
        'test_tokenizer_load_restores_only_params_and_matches_the_trained_ones',),
    'test_wavenet': ('test_causal_conv_step_equals_full', 'test_causality_and_receptive_field',
        'test_conditioning_changes_output', 'test_fast_generation_equals_naive',
        'test_logistic_mixture_head_fast_equals_naive',
        'test_sampling_conditioning_is_loaded_before_tracing',
        'test_tiny_training_run_writes_wavs',),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = os.path.splitext(os.path.basename(str(item.path)))[0]
        if item.originalname in SLOW.get(module, ()) or item.name in SLOW.get(module, ()):
            item.add_marker(pytest.mark.slow)
