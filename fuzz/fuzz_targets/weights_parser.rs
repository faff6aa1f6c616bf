//! Fuzzes the safetensors header parser and the model check behind it: any bytes must give a
//! header or an error, never a panic, and an accepted header must stay inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use text2img::weights::safetensors::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse(data) {
        for t in &h.tensors {
            assert!(h.data_start + t.end <= data.len());
        }
    }
});
