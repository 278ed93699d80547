//! Putting a remote-read answer into StoreAPI order without buffering it.
//!
//! Prometheus streams series sorted by their *stored* labels `L`. A sidecar
//! serves them with final labels `F` = `L` with the external labels `E` laid
//! over it (external wins) and the request's replica labels `R` removed, and
//! StoreAPI wants them sorted by `F`. Thanos buffers and sorts the whole
//! answer (its memory spike, spec §7.19). We do not need to:
//!
//! - The series are asked for in two parts (see [`crate::source`]): the
//!   *plain* ones, whose stored labels carry no name of `E ∪ R` (in practice
//!   all of them), and the *marked* rest, asked for first and buffered.
//! - For plain series, `F` is `L` merged with the constant pairs of `E \ R`
//!   on names `L` never has. If the current series is `L_c`, every later
//!   plain series `L' > L_c` either differs from `L_c` at some position `j`
//!   with a greater pair — then its `F'` is above every label set that starts
//!   with the pairs of `F_c` up to `L_c[j]` — or extends `L_c` with pairs
//!   whose names are after `L_c`'s last — then `F'` starts with `B`, the pairs
//!   of `F_c` whose names are at most `L_c`'s last name. Either way `F' > B`
//!   as a label sequence... and more: every buffered `F_b < B` is below every
//!   later `F'`, so it can go out now.
//! - `B` is `F_c` without its trailing external pairs, so in the usual case
//!   (external names sort after the series' names, or between them) the
//!   buffer holds one or two series: the answer streams.
//!
//! Marked series are merged into that stream by label order; series that end
//! up with the same final labels are merged into one, chunks in time order.

use std::collections::BTreeMap;

use sluice_model::{Labels, compare_labels};

/// Series in final-label order, from plain series in stored-label order and
/// marked series in any order.
#[derive(Debug)]
pub struct Reorder<T> {
    external: Labels,
    strip: Vec<String>,
    plain: BTreeMap<Labels, T>,
    marked: BTreeMap<Labels, T>,
    peak: usize,
}

/// How a payload of two series that end up with the same labels is merged.
pub trait Merge {
    fn merge(&mut self, other: Self);
}

impl<T: Merge> Reorder<T> {
    pub fn new(external: Labels, strip: Vec<String>) -> Self {
        Reorder {
            external,
            strip,
            plain: BTreeMap::new(),
            marked: BTreeMap::new(),
            peak: 0,
        }
    }

    /// Whether a stored label name is one of `E ∪ R`: series carrying such a
    /// name are "marked".
    pub fn is_marked_name(&self, name: &str) -> bool {
        self.external.get(name).is_some() || self.strip.iter().any(|r| r == name)
    }

    /// The final labels of a series as received (stored labels, plus what
    /// Prometheus added).
    pub fn final_labels(&self, mut labels: Labels) -> Labels {
        labels.extend_overriding(&self.external);
        labels.remove_names(&self.strip);
        labels
    }

    /// A marked series (final labels already computed). Buffered until
    /// [`Reorder::finish`] or until plain series pass it.
    pub fn push_marked(&mut self, fin: Labels, payload: T) {
        insert(&mut self.marked, fin, payload);
        self.peak = self.peak.max(self.buffered());
    }

    /// A plain series: `received` are its labels as Prometheus sent them
    /// (stored labels plus Prometheus' own external labels); `served` says
    /// whether its final labels are served (another shard's are not, but they
    /// still move the bound). Series that can go out are appended to `out`.
    /// The final labels are computed once, and everything below the bound
    /// goes out before the series is buffered (the series itself is never
    /// below its own bound, of which its final labels are an extension).
    pub fn push_plain(
        &mut self,
        received: Labels,
        served: impl FnOnce(&Labels) -> bool,
        payload: T,
        out: &mut Vec<(Labels, T)>,
    ) {
        let last: Option<String> = received
            .as_slice()
            .iter()
            .rfind(|l| !self.is_marked_name(&l.name))
            .map(|l| l.name.clone());
        let fin = self.final_labels(received);
        let k = last.as_deref().map_or(0, |last| {
            fin.iter().take_while(|l| l.name.as_str() <= last).count()
        });
        let bound = &fin.as_slice()[..k];
        while let Some(first) = self.plain.first_key_value() {
            if compare_labels(first.0.as_slice(), bound) != std::cmp::Ordering::Less {
                break;
            }
            let Some((f, p)) = self.plain.pop_first() else {
                break;
            };
            self.emit(f, p, out);
        }
        if served(&fin) {
            insert(&mut self.plain, fin, payload);
        }
        self.peak = self.peak.max(self.buffered());
    }

    /// Everything still buffered, in order.
    pub fn finish(mut self, out: &mut Vec<(Labels, T)>) {
        while let Some((f, p)) = self.plain.pop_first() {
            self.emit(f, p, out);
        }
        out.extend(std::mem::take(&mut self.marked));
    }

    /// Most series held at once.
    pub fn peak(&self) -> usize {
        self.peak
    }

    fn buffered(&self) -> usize {
        self.plain.len() + self.marked.len()
    }

    /// Emits one plain series after the marked ones below it, merged with a
    /// marked one of the same labels.
    fn emit(&mut self, f: Labels, mut p: T, out: &mut Vec<(Labels, T)>) {
        while let Some(m) = self.marked.first_key_value() {
            match m.0.cmp(&f) {
                std::cmp::Ordering::Less => {
                    if let Some(kv) = self.marked.pop_first() {
                        out.push(kv);
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let Some((_, mp)) = self.marked.pop_first() {
                        p.merge(mp);
                    }
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        out.push((f, p));
    }
}

fn insert<T: Merge>(map: &mut BTreeMap<Labels, T>, f: Labels, p: T) {
    match map.entry(f) {
        std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(p),
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Ids(Vec<u32>);

    impl Merge for Ids {
        fn merge(&mut self, other: Self) {
            self.0.extend(other.0);
            self.0.sort_unstable();
        }
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        // Few names and values so that prefixes, clashes and equal final
        // labels are common; `b` and `r` may be external or replica names.
        proptest::collection::btree_map(
            prop_oneof![
                Just("__name__"),
                Just("a"),
                Just("b"),
                Just("c"),
                Just("r"),
                Just("z")
            ],
            prop_oneof![Just("0"), Just("1"), Just("2")],
            1..5,
        )
        .prop_map(Labels::from_pairs)
    }

    /// Runs the reorder as the sidecar does: marked series first (any
    /// order), then plain series in stored order with Prometheus' external
    /// labels added (stored labels win there).
    fn run(stored: &[Labels], external: &Labels, strip: &[String]) -> (Vec<(Labels, Ids)>, usize) {
        let mut r: Reorder<Ids> = Reorder::new(external.clone(), strip.to_vec());
        let mut sorted: Vec<(usize, &Labels)> = stored.iter().enumerate().collect();
        sorted.sort_by(|a, b| a.1.cmp(b.1));
        let mut out = Vec::new();
        for (i, l) in &sorted {
            if l.iter().any(|x| r.is_marked_name(&x.name)) {
                let f = r.final_labels((*l).clone());
                r.push_marked(f, Ids(vec![*i as u32]));
            }
        }
        for (i, l) in &sorted {
            if l.iter().any(|x| r.is_marked_name(&x.name)) {
                continue;
            }
            let mut received = external.clone();
            received.extend_overriding(l);
            r.push_plain(received, |_| true, Ids(vec![*i as u32]), &mut out);
        }
        let peak = r.peak();
        r.finish(&mut out);
        (out, peak)
    }

    fn expected(stored: &[Labels], external: &Labels, strip: &[String]) -> Vec<(Labels, Ids)> {
        let mut m: BTreeMap<Labels, Ids> = BTreeMap::new();
        for (i, l) in stored.iter().enumerate() {
            let mut f = l.clone();
            f.extend_overriding(external);
            f.remove_names(strip);
            insert(&mut m, f, Ids(vec![i as u32]));
        }
        m.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn equals_a_full_sort(
            stored in proptest::collection::btree_set(arb_labels(), 0..40),
            ext_b in proptest::option::of(prop_oneof![Just("0"), Just("9")]),
            ext_r in proptest::option::of(prop_oneof![Just("1"), Just("9")]),
            strip_r in any::<bool>(),
            strip_a in any::<bool>(),
        ) {
            let stored: Vec<Labels> = stored.into_iter().collect();
            let mut ext = Vec::new();
            if let Some(v) = ext_b { ext.push(("b", v)); }
            if let Some(v) = ext_r { ext.push(("r", v)); }
            let external = Labels::from_pairs(ext);
            let mut strip = Vec::new();
            if strip_r { strip.push("r".to_string()); }
            if strip_a { strip.push("a".to_string()); }
            let (got, _) = run(&stored, &external, &strip);
            prop_assert_eq!(got, expected(&stored, &external, &strip));
        }
    }

    #[test]
    fn usual_answers_stream_with_one_series_buffered() {
        // 1,000 series of two metrics, external labels before and after the
        // series' names, the replica label stripped.
        let mut stored = Vec::new();
        for m in ["go_goroutines", "up"] {
            for i in 0..500 {
                stored.push(Labels::from_pairs([
                    ("__name__", m.to_string()),
                    ("instance", format!("host-{i:04}:9100")),
                    ("job", "node".to_string()),
                ]));
            }
        }
        let external = Labels::from_pairs([("cluster", "eu-1"), ("replica", "0")]);
        for strip in [vec![], vec!["replica".to_string()]] {
            let (got, peak) = run(&stored, &external, &strip);
            assert_eq!(got, expected(&stored, &external, &strip));
            assert!(peak <= 2, "held {peak} series at once");
        }
    }
}
