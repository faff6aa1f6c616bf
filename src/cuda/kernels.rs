//! The embedded kernels: build.rs writes one `KernelFile` per kernels/*.cu (PTX for compute_80
//! and compute_90 when nvcc was found at build time, always the source for NVRTC), and this file
//! lists the symbols each file must define, so a renamed kernel fails a test, not a GPU run.

/// One kernels/*.cu as embedded at build time.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    /// The file stem (`gemm` for kernels/gemm.cu).
    pub name: &'static str,
    /// PTX for compute_80 (A100 and up), when nvcc compiled it.
    pub ptx_sm80: Option<&'static str>,
    /// PTX for compute_90 (H100/H200), when nvcc compiled it.
    pub ptx_sm90: Option<&'static str>,
    /// The source with kernels/common.cuh inlined (for NVRTC).
    pub source: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Every kernel symbol, with the file that defines it.
pub const SYMBOLS: &[(&str, &str)] = &[
    ("gemm", "gemm_fwd_f32"),
    ("conv2d", "conv2d_fwd_f32"),
    ("conv2d", "conv2d_fwd_bf16"),
    ("conv2d", "splitk_epilogue_f32"),
    ("conv_transpose2d", "conv_transpose2d_fwd_f32"),
    ("conv_transpose2d", "conv_transpose2d_1px_fwd_f32"),
    ("conv_transpose2d", "conv_transpose2d_fwd_bf16"),
    ("conv_transpose2d", "conv_transpose2d_1px_fwd_bf16"),
    ("batch_norm", "batch_norm_fwd_f32"),
    ("elementwise", "activation_fwd_f32"),
    ("elementwise", "add_fwd_f32"),
    ("elementwise", "concat_channels_fwd_f32"),
    ("elementwise", "replicate_spatial_fwd_f32"),
    ("elementwise", "mean_time_fwd_f32"),
    ("elementwise", "maxpool1d_fwd_f32"),
    ("char_cnn_rnn", "conv1d_fwd_f32"),
    ("char_cnn_rnn", "conv1d_fwd_bf16"),
    ("char_cnn_rnn", "gru_step_rz_f32"),
    ("char_cnn_rnn", "gru_step_n_f32"),
    ("char_cnn_rnn", "gru_step_rz_tile_f32"),
    ("char_cnn_rnn", "gru_step_n_tile_f32"),
    ("char_cnn_rnn", "rnn_relu_step_f32"),
    ("rng", "philox_normal_fwd_f32"),
    // Training (issue 8): backward passes, losses, optimizers.
    ("conv_transpose2d", "conv2d_bwd_data_f32"),
    ("conv2d", "conv2d_bwd_weight_f32"),
    ("conv2d", "conv2d_splitk_sum_f32"),
    ("batch_norm", "batch_norm_train_fwd_f32"),
    ("batch_norm", "batch_norm_bwd_f32"),
    ("elementwise", "activation_bwd_f32"),
    ("elementwise", "concat_channels_bwd_f32"),
    ("elementwise", "replicate_spatial_bwd_f32"),
    ("loss", "bce_with_logits_f32"),
    ("optim", "adam_step_f32"),
    ("optim", "rmsprop_step_f32"),
    ("batch_norm", "batch_norm_update_running_f32"),
    ("elementwise", "accumulate_f32"),
    ("elementwise", "shift_images_f32"),
    ("elementwise", "flip_images_f32"),
    ("elementwise", "maxpool1d_bwd_f32"),
    ("optim", "ema_update_f32"),
    ("loss", "softmax_ce_blocks_f32"),
    ("loss", "mode_seeking_f32"),
    ("loss", "sample_codes_f32"),
    ("loss", "l1_loss_f32"),
    ("loss", "code_gradients_f32"),
    ("elementwise", "onehot_f32"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_is_defined_by_its_file() {
        for &(file, sym) in SYMBOLS {
            let f = ALL.iter().find(|k| k.name == file).unwrap_or_else(|| panic!("no kernels/{file}.cu"));
            assert!(f.source.contains(&format!("void {sym}(")) || f.source.contains(&format!(" {sym}(")), "{sym}");
            for ptx in [f.ptx_sm80, f.ptx_sm90].into_iter().flatten() {
                assert!(ptx.contains(&format!(".entry {sym}(")), "{sym} missing from the PTX of {file}");
            }
        }
    }

    #[test]
    fn sources_need_no_include_path() {
        for f in ALL {
            assert!(!f.source.contains("#include"), "kernels/{}.cu still has an #include for NVRTC", f.name);
        }
    }
}
