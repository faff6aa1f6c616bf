//! Property tests of the weights parser: what our writer writes is read back exactly (and by
//! the official `safetensors` crate), what the official writer writes we read, and arbitrary or
//! mutated bytes are refused without a panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use text2img::tensor::{DType, Tensor};
use text2img::weights::{safetensors::parse, writer::to_bytes};

fn dtype() -> impl Strategy<Value = DType> {
    prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)]
}

fn tensor() -> impl Strategy<Value = Tensor> {
    (prop::collection::vec(0usize..5, 0..4), dtype()).prop_flat_map(|(shape, dt)| {
        let n: usize = shape.iter().product();
        prop::collection::vec(-1e3f32..1e3, n).prop_map(move |v| Tensor::from_f32(&shape, v).to_dtype(dt))
    })
}

fn tensors() -> impl Strategy<Value = Vec<(String, Tensor)>> {
    prop::collection::btree_map("[a-z][a-z0-9_.]{0,12}", tensor(), 0..6).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn our_writer_round_trips(ts in tensors(), meta in prop::collection::btree_map("[a-z]{1,6}", ".{0,20}", 0..3)) {
        let bytes = to_bytes(&ts, &meta);
        let h = parse(&bytes).expect("our own file parses");
        prop_assert_eq!(h.tensors.len(), ts.len());
        prop_assert_eq!(&h.metadata, &meta);
        prop_assert_eq!(h.data_start % 64, 0);
        for (name, t) in &ts {
            let info = h.get(name).expect("tensor present");
            prop_assert_eq!(&info.shape, &t.shape().to_vec());
            prop_assert_eq!(info.dtype, t.dtype());
            let raw = &bytes[h.data_start + info.begin..h.data_start + info.end];
            prop_assert_eq!(raw, &t.to_le_bytes()[..]);
        }
        // The official reader agrees.
        let official = safetensors::SafeTensors::deserialize(&bytes).expect("official reader");
        prop_assert_eq!(official.len(), ts.len());
    }

    #[test]
    fn official_writer_is_read(ts in tensors()) {
        let views: Vec<(String, safetensors::tensor::TensorView)> = ts.iter().map(|(n, t)| {
            let dt = match t.dtype() { DType::F32 => safetensors::Dtype::F32, DType::F16 => safetensors::Dtype::F16, DType::BF16 => safetensors::Dtype::BF16 };
            let bytes: &'static [u8] = Box::leak(t.to_le_bytes().into_boxed_slice());
            (n.clone(), safetensors::tensor::TensorView::new(dt, t.shape().to_vec(), bytes).expect("view"))
        }).collect();
        let bytes = safetensors::serialize(views, None).expect("serialize");
        let h = parse(&bytes).expect("official file parses");
        prop_assert_eq!(h.tensors.len(), ts.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(ts in tensors(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = to_bytes(&ts, &BTreeMap::new());
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(h) = parse(&bytes) {
            // Whatever is accepted must still lie inside the file.
            for t in &h.tensors {
                prop_assert!(h.data_start + t.end <= bytes.len());
            }
        }
        let cut = pos.index(bytes.len());
        let _ = parse(&bytes[..cut]);
    }
}

/// A mapped tensor whose pages were dropped (`WeightFile::release`, after the graph copied it)
/// reads back the same values, as do its neighbours sharing its first and last pages.
#[test]
fn released_tensor_reads_back_the_same() {
    use text2img::weights::{LoadMode, WeightFile};
    let big: Vec<f32> = (0..300_001).map(|i| (i as f32 * 0.37).sin()).collect();
    let small: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let ts = vec![
        ("a".to_string(), Tensor::from_f32(&[1000], small.clone())),
        ("b".to_string(), Tensor::from_f32(&[300_001], big.clone())),
        ("c".to_string(), Tensor::from_f32(&[1000], small.clone())),
    ];
    let dir = std::env::temp_dir().join(format!("t2i-release-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("w.safetensors");
    std::fs::write(&path, to_bytes(&ts, &BTreeMap::new())).expect("write");
    let file = WeightFile::open(&path, LoadMode::Mmap).expect("open");
    assert!(file.is_mapped());
    assert_eq!(&*file.f32_data("b").expect("b"), &big[..]);
    file.release(file.info("b").expect("info"));
    assert_eq!(&*file.f32_data("b").expect("b again"), &big[..]);
    assert_eq!(&*file.f32_data("a").expect("a"), &small[..]);
    assert_eq!(&*file.f32_data("c").expect("c"), &small[..]);
    std::fs::remove_dir_all(&dir).ok();
}
