//! What the per-op benches share: deterministic data and a 2-thread pool.

/// n values in [−0.5, 0.5), the same on every run.
pub fn data(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

/// The pool every bench runs in (the 2-thread comparisons).
pub fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool")
}
