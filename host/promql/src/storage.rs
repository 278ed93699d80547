//! Where the engine reads series from.

use futures::future::BoxFuture;

use sluice_model::{Labels, Matcher, SelectedSeries};

/// What the engine knows about one selector when it asks for its series.
#[derive(Debug, Clone, Default)]
pub struct SelectHints {
    pub matchers: Vec<Matcher>,
    /// Inclusive range in ms: everything any step may look at.
    pub start: i64,
    pub end: i64,
    /// Step of the enclosing evaluation (0 for an instant query).
    pub step: i64,
    /// Range of the enclosing matrix selector or subquery (ms), else 0.
    pub range: i64,
    /// Enclosing function (`rate`, `max_over_time`, …), empty if none.
    pub func: String,
    /// Grouping labels of the enclosing aggregation.
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` (true) or a `without` (false) list.
    pub by: bool,
}

/// Series selected for one selector: sample columns, sorted by labels.
#[derive(Debug, Clone, Default)]
pub struct SeriesSet {
    pub series: Vec<SelectedSeries>,
    pub warnings: Vec<String>,
    /// Held until the query's evaluation ends (a storage's memory
    /// reservation for the decoded samples, say); the engine only keeps them.
    pub guards: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

/// A source of series for the engine.
pub trait Storage: Send + Sync {
    /// Series matching `hints.matchers` with their samples in
    /// `[hints.start, hints.end]`. An error fails the query (`execution`).
    fn select(&self, hints: SelectHints) -> BoxFuture<'_, Result<SeriesSet, String>>;
}

/// An in-memory storage: the test harness' and the fixtures' backend.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    series: Vec<SelectedSeries>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples to the series with these labels (created if new). Samples
    /// must be ascending; those not after the series' last one are dropped.
    pub fn add(&mut self, labels: Labels, samples: &[(i64, f64)]) {
        let pos = match self.series.binary_search_by(|s| s.labels.cmp(&labels)) {
            Ok(p) => p,
            Err(p) => {
                self.series.insert(
                    p,
                    SelectedSeries {
                        labels,
                        timestamps: Vec::new(),
                        values: Vec::new(),
                    },
                );
                p
            }
        };
        let s = &mut self.series[pos];
        for &(t, v) in samples {
            if s.timestamps.last().is_some_and(|&l| t <= l) {
                continue;
            }
            s.timestamps.push(t);
            s.values.push(v);
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn select_sync(&self, h: &SelectHints) -> SeriesSet {
        let series = self
            .series
            .iter()
            .filter(|s| h.matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .filter_map(|s| {
                let lo = s.timestamps.partition_point(|&t| t < h.start);
                let hi = s.timestamps.partition_point(|&t| t <= h.end);
                (lo < hi).then(|| SelectedSeries {
                    labels: s.labels.clone(),
                    timestamps: s.timestamps[lo..hi].to_vec(),
                    values: s.values[lo..hi].to_vec(),
                })
            })
            .collect();
        SeriesSet {
            series,
            warnings: Vec::new(),
            guards: Vec::new(),
        }
    }
}

impl Storage for MemStorage {
    fn select(&self, hints: SelectHints) -> BoxFuture<'_, Result<SeriesSet, String>> {
        let r = self.select_sync(&hints);
        Box::pin(async move { Ok(r) })
    }
}
