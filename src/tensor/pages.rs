//! Big buffers on transparent huge pages. The packed weights of the batch-1 layers are read
//! front to back once per forward (deconv1 of reed-cub: 33.5 MB), which on 4 KB pages costs a
//! TLB miss every 4 KB; this machine's kernel gives huge pages only to memory that asks for
//! them (`transparent_hugepage/enabled = madvise`), so big buffers ask before they are touched.

/// Buffers smaller than this stay on ordinary pages (a huge page is 2 MB).
const MIN_BYTES: usize = 4 << 20;

/// A zeroed vector of `n` elements; when it is big, its pages are advised to be huge before
/// the first write faults them in.
pub fn zeroed<T: Copy + Default>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    advise_huge(v.as_mut_ptr() as usize, n * std::mem::size_of::<T>());
    v.resize(n, T::default());
    v
}

#[cfg(target_os = "linux")]
fn advise_huge(addr: usize, len: usize) {
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    const MADV_HUGEPAGE: i32 = 14;
    if len < MIN_BYTES || std::env::var_os("TEXT2IMG_NO_HUGEPAGES").is_some() {
        return;
    }
    let start = addr & !4095;
    let end = (addr + len + 4095) & !4095;
    // SAFETY: madvise only sets an advice flag on the mappings covering [start, end), pages of
    // this allocation and at most the rest of its first and last 4 KB page; it never changes
    // their contents or validity. A failure (an old kernel, THP off) leaves ordinary pages.
    unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_is_zero_and_sized() {
        for n in [0, 1, 1000, (8 << 20) / 4 + 3] {
            let v: Vec<f32> = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
