//! A dedup plugin that misbehaves in the way its slot config names
//! (`{"mode": "..."}`), so one component covers every runtime failure:
//!
//! | mode | what `dedup` does | the host should see |
//! |---|---|---|
//! | `spin` | loops forever | the deadline: Timeout |
//! | `bomb` | allocates until memory runs out | the memory cap: Oom |
//! | `trap` | panics (`panic = "abort"`) | Trap |
//! | `unreachable` | executes `unreachable` | Trap |
//! | `huge` | returns ~16 MB of valid samples | the output cap: InvalidOutput |
//! | `unordered` | returns timestamps that go back in time | InvalidOutput |
//! | `error` | returns `Err` | PluginError |
//! | `ok` | returns the first replica | success |

use serde::Deserialize;
use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Spin,
    Bomb,
    Trap,
    Unreachable,
    Huge,
    Unordered,
    Error,
    Ok,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
}

struct Hostile {
    mode: Mode,
}

impl DedupPolicy for Hostile {
    fn info() -> Info {
        Info::new("hostile", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        let c: Config = sluice_sdk::parse_config(config)?;
        Ok(Hostile { mode: c.mode })
    }

    fn dedup(&self, replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
        match self.mode {
            Mode::Spin => {
                let mut x: u64 = 1;
                loop {
                    // Opaque to the optimiser, so the loop is not removed.
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            Mode::Bomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really committed.
                    hoard.push(vec![0xa5; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Trap => panic!("hostile plugin panics on purpose"),
            Mode::Unreachable => std::process::abort(),
            Mode::Huge => {
                let n = 1_000_000; // 16 bytes a sample: ~16 MB of output
                Ok(Series::new((0..n).collect(), vec![1.0; n as usize]))
            }
            Mode::Unordered => Ok(Series::new(vec![1000, 3000, 2000], vec![1.0, 2.0, 3.0])),
            Mode::Error => Err("hostile plugin refuses on purpose".into()),
            Mode::Ok => Ok(replicas.first().cloned().unwrap_or_default()),
        }
    }
}

sluice_sdk::export_dedup!(Hostile);
