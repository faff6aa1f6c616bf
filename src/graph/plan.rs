//! Memory planning for one batch size: every value gets an offset in one f32 arena, reusing the
//! space of values whose last reader has run (first fit over a sorted free list, as in tract and
//! ggml-alloc). A node's output never shares space with its inputs.

use super::builder::{Graph, Op};
use crate::ops::rnn;
use crate::ops::tap_conv::{self, TapShape};

/// Values start on 64-byte boundaries.
const ALIGN: usize = 16;

/// Offsets and sizes for one batch size.
#[derive(Clone, Debug)]
pub struct Plan {
    pub batch: usize,
    /// Arena offset of every value (elements).
    pub offsets: Vec<usize>,
    /// Arena length (elements).
    pub arena_len: usize,
    /// Scratch length (elements): the largest any node needs.
    pub scratch_len: usize,
}

impl Plan {
    /// Plans `graph` for `batch` samples.
    pub fn new(graph: &Graph, batch: usize) -> Plan {
        let n_values = graph.values.len();
        // Index of the last node reading each value; graph outputs live to the end.
        let mut last_use: Vec<Option<usize>> = vec![None; n_values];
        for (i, node) in graph.nodes.iter().enumerate() {
            for &v in &node.inputs {
                last_use[v] = Some(i);
            }
        }
        for &v in &graph.outputs {
            last_use[v] = Some(usize::MAX);
        }
        let size = |v: usize| (graph.values[v].len() * batch).div_ceil(ALIGN) * ALIGN;
        let mut alloc = FreeList::default();
        let mut offsets = vec![usize::MAX; n_values];
        for &v in &graph.inputs {
            offsets[v] = alloc.take(size(v));
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            offsets[node.output] = alloc.take(size(node.output));
            let mut freed: Vec<usize> = Vec::new();
            for &v in &node.inputs {
                if last_use[v] == Some(i) && !freed.contains(&v) && !graph.inputs.contains(&v) {
                    freed.push(v);
                    alloc.give(offsets[v], size(v));
                }
            }
            if last_use[node.output].is_none() {
                // An output nobody reads dies at once.
                alloc.give(offsets[node.output], size(node.output));
            }
        }
        let scratch_len = graph.nodes.iter().map(|n| scratch_len(&n.op, batch)).max().unwrap_or(0);
        Plan { batch, offsets, arena_len: alloc.end, scratch_len }
    }
}

/// Scratch a node needs on the fast path.
pub(crate) fn scratch_len(op: &Op, batch: usize) -> usize {
    match *op {
        // Any form of the kernel may be in the graph (the builder picks one per layer).
        Op::Conv2d { geom, .. } => geom
            .scratch_len(batch)
            .max(crate::ops::conv_winograd::scratch_len(&geom, batch))
            .max(TapShape::conv(&geom).map_or(0, |s| tap_conv::scratch_len(&s))),
        Op::ConvTranspose2d { geom, .. } => geom
            .scratch_len(batch)
            .max(crate::ops::deconv_winograd::scratch_len(&geom, batch))
            .max(TapShape::deconv(&geom).map_or(0, |s| tap_conv::scratch_len(&s))),
        Op::Conv1d { cin, t, cout, k, .. } => {
            let g = crate::ops::conv1d::as_conv2d(cin, t, cout, k);
            g.scratch_len(batch).max(TapShape::conv(&g).map_or(0, |s| tap_conv::scratch_len(&s)))
        }
        Op::Rnn { gru, cin, t, hidden, .. } => rnn::scratch_len(gru, rnn::RnnDims { batch, cin, t, hidden }),
        _ => 0,
    }
}

/// Sorted, coalescing free list over a growing arena.
#[derive(Default)]
struct FreeList {
    free: Vec<(usize, usize)>,
    end: usize,
}

impl FreeList {
    fn take(&mut self, len: usize) -> usize {
        if let Some(i) = self.free.iter().position(|&(_, l)| l >= len) {
            let (start, l) = self.free[i];
            if l == len {
                self.free.remove(i);
            } else {
                self.free[i] = (start + len, l - len);
            }
            return start;
        }
        // Grow, extending a free block that touches the end.
        if let Some(&(start, l)) = self.free.last() {
            if start + l == self.end {
                self.free.pop();
                self.end = start + len;
                return start;
            }
        }
        let start = self.end;
        self.end += len;
        start
    }

    fn give(&mut self, start: usize, len: usize) {
        let i = self.free.partition_point(|&(s, _)| s < start);
        self.free.insert(i, (start, len));
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }
}
