//! Reloadable TLS material: a value built from a set of files, rebuilt when
//! their content changes. Readers take the current value with one atomic load,
//! so a reload never blocks or disturbs a handshake in progress or a
//! connection already established.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::TlsError;

/// How often files are checked by default. Reading a few small PEM files is
/// cheap, and content hashing works with Kubernetes' symlink-swapped secret
/// volumes, where mtimes and inotify events are unreliable.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync>;

struct State {
    /// Hash of the contents the current value was built from.
    loaded: [u8; 32],
    /// Hash of contents that failed to build (logged once, not retried until they change).
    failed: Option<[u8; 32]>,
}

/// A value built from the contents of `paths`, rebuilt on change.
pub struct Reloading<T> {
    what: String,
    paths: Vec<PathBuf>,
    build: Build<T>,
    current: ArcSwap<T>,
    state: Mutex<State>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish()
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, TlsError> {
    paths
        .iter()
        .map(|p| super::read("file", p))
        .collect::<Result<Vec<_>, _>>()
}

fn hash(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in contents {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
    h.finalize().into()
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Reads `paths` and builds the first value; failing is an error (a
    /// process does not start with broken TLS material).
    pub fn new(
        what: impl Into<String>,
        paths: Vec<PathBuf>,
        build: impl Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let contents = read_all(&paths)?;
        let value = build(&contents)?;
        Ok(Arc::new(Reloading {
            what: what.into(),
            paths,
            build: Box::new(build),
            current: ArcSwap::from_pointee(value),
            state: Mutex::new(State {
                loaded: hash(&contents),
                failed: None,
            }),
        }))
    }

    /// The value new handshakes use.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Re-reads the files; when their content changed, builds and publishes a
    /// new value. Returns whether a new value was published. A file that
    /// cannot be read or material that does not build keeps the old value and
    /// is logged once per distinct content.
    pub fn check(&self) -> bool {
        let contents = match read_all(&self.paths) {
            Ok(c) => c,
            Err(e) => {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                // A missing file mid-rotation: log once per episode.
                let marker = [0xff; 32];
                if st.failed != Some(marker) {
                    st.failed = Some(marker);
                    tracing::warn!(what = %self.what, error = %e, "cannot re-read TLS material; keeping the current certificates");
                }
                return false;
            }
        };
        let h = hash(&contents);
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.loaded == h {
                st.failed = None;
                return false;
            }
            if st.failed == Some(h) {
                return false;
            }
        }
        match (self.build)(&contents) {
            Ok(v) => {
                self.current.store(Arc::new(v));
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.loaded = h;
                st.failed = None;
                tracing::info!(what = %self.what, files = ?self.paths, "reloaded TLS material; new handshakes use it");
                true
            }
            Err(e) => {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.failed = Some(h);
                tracing::warn!(what = %self.what, error = %e, "new TLS material is unusable; keeping the current certificates");
                false
            }
        }
    }

    /// Checks the files every `every` until the last strong reference to
    /// `self` is dropped.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = if every.is_zero() {
            DEFAULT_RELOAD_INTERVAL
        } else {
            every
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                // File reads are small but blocking: keep them off the reactor threads.
                let r = tokio::task::spawn_blocking(move || {
                    this.check();
                })
                .await;
                if r.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_on_change_and_keeps_old_value_on_broken_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.txt");
        std::fs::write(&f, "1").unwrap();
        let r = Reloading::new("number", vec![f.clone()], |c: &[Vec<u8>]| {
            std::str::from_utf8(&c[0])
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or_else(|| TlsError::Config("not a number".into()))
        })
        .unwrap();
        assert_eq!(*r.current(), 1);
        assert!(!r.check(), "unchanged content is not rebuilt");
        std::fs::write(&f, "2").unwrap();
        assert!(r.check());
        assert_eq!(*r.current(), 2);
        std::fs::write(&f, "garbage").unwrap();
        assert!(!r.check());
        assert_eq!(*r.current(), 2, "a broken file keeps the old value");
        std::fs::remove_file(&f).unwrap();
        assert!(!r.check());
        assert_eq!(*r.current(), 2, "a missing file keeps the old value");
        std::fs::write(&f, "3").unwrap();
        assert!(r.check());
        assert_eq!(*r.current(), 3);
    }
}
