//! The ICML paper's disentangling evaluation (§5.3): images are grouped by a style property
//! (K-means++ on the true background colour, or on the pose), pairs are labelled "same style"
//! when both fall in one cluster, scored by the cosine similarity of some feature (S's predicted
//! style vectors, or the baseline's caption embeddings), and the score is the ROC AUC, averaged
//! over folds of the images.

use crate::data::rng::Pcg32;

/// K-means with k-means++ seeding on `points` ([N, dim]); returns each point's cluster.
/// Deterministic in `seed`; stops when no label changes or after `iters` rounds.
pub fn kmeans(points: &[f32], dim: usize, k: usize, seed: u64, iters: usize) -> Vec<usize> {
    let n = points.len() / dim.max(1);
    if n == 0 || k == 0 {
        return vec![0; n];
    }
    let k = k.min(n);
    let p = |i: usize| &points[i * dim..(i + 1) * dim];
    let d2 = |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum() };
    let mut rng = Pcg32::new(seed);
    let mut centres: Vec<Vec<f32>> = vec![p(rng.index(n)).to_vec()];
    let mut nearest: Vec<f64> = (0..n).map(|i| d2(p(i), &centres[0])).collect();
    while centres.len() < k {
        // Next centre drawn with probability ∝ squared distance to the nearest one so far.
        let total: f64 = nearest.iter().sum();
        let mut target = rng.unit() * total;
        let mut pick = n - 1;
        for (i, &w) in nearest.iter().enumerate() {
            if target < w {
                pick = i;
                break;
            }
            target -= w;
        }
        centres.push(p(pick).to_vec());
        let c = centres.len() - 1;
        for (i, best) in nearest.iter_mut().enumerate() {
            *best = best.min(d2(p(i), &centres[c]));
        }
    }
    let mut labels = vec![usize::MAX; n];
    for _ in 0..iters.max(1) {
        let mut changed = false;
        for (i, l) in labels.iter_mut().enumerate() {
            let best = (0..k).min_by(|&a, &b| d2(p(i), &centres[a]).total_cmp(&d2(p(i), &centres[b]))).unwrap_or(0);
            changed |= *l != best;
            *l = best;
        }
        if !changed {
            break;
        }
        for (c, centre) in centres.iter_mut().enumerate() {
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
            if members.is_empty() {
                continue; // an empty cluster keeps its centre
            }
            for (j, v) in centre.iter_mut().enumerate() {
                *v = members.iter().map(|&i| points[i * dim + j]).sum::<f32>() / members.len() as f32;
            }
        }
    }
    labels
}

/// Area under the ROC curve of `scores` for the positives `labels` (the Mann–Whitney statistic,
/// ties counted half). 0.5 when either class is empty.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (pos, neg) = (labels.iter().filter(|&&l| l).count(), labels.iter().filter(|&&l| !l).count());
    if pos == 0 || neg == 0 {
        return 0.5;
    }
    // Sum of the positives' ranks (1-based, ties given their mean rank).
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&o| labels[o]).count() as f64;
        i = j + 1;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64)
}

/// The ROC curve: (false-positive rate, true-positive rate) from the highest threshold down,
/// `points` + 1 samples.
pub fn roc_curve(scores: &[f32], labels: &[bool], points: usize) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (pos, neg) = (labels.iter().filter(|&&l| l).count().max(1), labels.iter().filter(|&&l| !l).count().max(1));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut curve = vec![(0.0, 0.0)];
    let step = (order.len() / points.max(1)).max(1);
    for (k, &o) in order.iter().enumerate() {
        if labels[o] {
            tp += 1;
        } else {
            fp += 1;
        }
        if (k + 1) % step == 0 || k + 1 == order.len() {
            curve.push((fp as f64 / neg as f64, tp as f64 / pos as f64));
        }
    }
    curve
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}

/// AUC of one feature for one clustering, over `folds` folds of the items.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verification {
    pub auc_mean: f64,
    pub auc_std: f64,
    /// ROC curve of all folds' pairs together.
    pub curve: Vec<(f64, f64)>,
}

/// Scores every pair within each fold (items assigned to folds by a seeded shuffle) by the
/// cosine of `features` ([N, dim]); positives are pairs in one cluster.
pub fn verify(features: &[f32], dim: usize, clusters: &[usize], folds: usize, seed: u64) -> Verification {
    let n = clusters.len();
    let mut order: Vec<usize> = (0..n).collect();
    Pcg32::new(seed).shuffle(&mut order);
    let f = |i: usize| &features[i * dim..(i + 1) * dim];
    let (mut aucs, mut all_s, mut all_l) = (Vec::new(), Vec::new(), Vec::new());
    let folds = folds.clamp(1, n.max(1));
    for fold in 0..folds {
        let members: Vec<usize> = order.iter().copied().skip(fold).step_by(folds).collect();
        let (mut s, mut l) = (Vec::new(), Vec::new());
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                s.push(cosine(f(a), f(b)));
                l.push(clusters[a] == clusters[b]);
            }
        }
        aucs.push(roc_auc(&s, &l));
        all_s.extend(s);
        all_l.extend(l);
    }
    let mean = aucs.iter().sum::<f64>() / aucs.len().max(1) as f64;
    let var = aucs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / aucs.len().max(1) as f64;
    Verification { auc_mean: mean, auc_std: var.sqrt(), curve: roc_curve(&all_s, &all_l, 200) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_hand_made_scores() {
        // Perfect, reversed, and one swapped pair of four.
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(roc_auc(&[0.1, 0.8, 0.2, 0.9], &[false, false, true, true]), 0.75);
        // All tied: chance.
        assert_eq!(roc_auc(&[0.5; 6], &[true, false, true, false, true, false]), 0.5);
        // One class only.
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), 0.5);
    }

    #[test]
    fn roc_curve_ends_at_one_one() {
        let c = roc_curve(&[0.1, 0.8, 0.2, 0.9], &[false, false, true, true], 10);
        assert_eq!(c.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.last(), Some(&(1.0, 1.0)));
        assert!(c.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    }

    #[test]
    fn kmeans_finds_known_clusters() {
        // Three tight blobs far apart, 20 points each, interleaved.
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let mut pts = Vec::new();
        let mut rng = Pcg32::new(3);
        for i in 0..60 {
            let c = centres[i % 3];
            pts.extend([c[0] + rng.range(-0.5, 0.5), c[1] + rng.range(-0.5, 0.5)]);
        }
        for seed in 0..5 {
            let l = kmeans(&pts, 2, 3, seed, 50);
            for i in 0..60 {
                for j in 0..60 {
                    assert_eq!(l[i] == l[j], i % 3 == j % 3, "seed {seed}: points {i}, {j}");
                }
            }
        }
    }

    #[test]
    fn verification_separates_a_feature_that_encodes_the_cluster() {
        let clusters: Vec<usize> = (0..50).map(|i| i % 5).collect();
        let good: Vec<f32> = clusters.iter().flat_map(|&c| (0..5).map(move |j| f32::from(u8::from(j == c)))).collect();
        let v = verify(&good, 5, &clusters, 5, 0);
        assert!(v.auc_mean > 0.99, "{v:?}");
        let flat = vec![1.0f32; 50 * 5];
        assert!((verify(&flat, 5, &clusters, 5, 0).auc_mean - 0.5).abs() < 1e-9);
    }
}
