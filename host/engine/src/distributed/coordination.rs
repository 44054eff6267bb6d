//! The messages of a data-parallel run, through c10d's TCPStore (rank 0 serves it): the ranks
//! join, compare what they resolved, say whether they are ready, learn the run folder, receive
//! rank 0's fitted preprocessors, and leave a line when they fail. Each rank also beats: a
//! thread with its own connection counts its heartbeats and publishes its training step, so
//! that when a collective fails the survivors can say which rank stopped or hangs, and why.
//!
//! Keys, all under `gymnos/`: `joined` (a counter), `host/<r>`, `<question>/<r>` (each rank's
//! answer, JSON), `value/<name>` (rank 0's), `abort` (the first failure's line), `failed/<r>`,
//! `alive/<r>` (a counter), `step/<r>`.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use gymnos_host::distributed::World;
use serde::{Deserialize, Serialize};

use super::c10d::Store;

/// How often a rank beats, and how long the diagnosis watches for beats.
const BEAT: Duration = Duration::from_millis(500);
const WATCH: Duration = Duration::from_millis(2500);
/// How often a waiting rank looks at the store.
const POLL: Duration = Duration::from_millis(20);

/// A rank's connection to the others, outside the collectives.
pub struct Coordinator {
    world: World,
    store: Store,
    host: String,
    timeout: Duration,
    step: Arc<AtomicU64>,
    heartbeat: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// What must be the same on every rank: the experiment as resolved (library paths aside: they
/// may differ between nodes), each plugin library's hash, and libtorch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub experiment_sha256: String,
    /// `path in the experiment` -> `name@version sha256`.
    pub plugins: BTreeMap<String, String>,
    pub libtorch: String,
}

impl Fingerprint {
    /// What differs from `root`'s, each named.
    pub fn differences(&self, root: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.libtorch != root.libtorch {
            out.push(format!("libtorch {} (rank 0 has {})", self.libtorch, root.libtorch));
        }
        for (path, plugin) in &self.plugins {
            match root.plugins.get(path) {
                Some(theirs) if theirs == plugin => {}
                Some(theirs) => out.push(format!("{path} is {plugin} (rank 0 has {theirs})")),
                None => out.push(format!("{path} is {plugin} (rank 0 has none)")),
            }
        }
        for path in root.plugins.keys().filter(|p| !self.plugins.contains_key(*p)) {
            out.push(format!("{path} is missing (rank 0 has {})", root.plugins[path]));
        }
        if out.is_empty() && self.experiment_sha256 != root.experiment_sha256 {
            out.push("the experiment's settings differ (another file, or other --set values)".into());
        }
        out
    }
}

/// One rank's answer to a question all ranks are asked.
#[derive(Serialize, Deserialize)]
enum Answer {
    Ready(String),
    Failed(String),
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a writable buffer of its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok { std::ffi::CStr::from_bytes_until_nul(&buf).ok() } else { None };
    name.map_or_else(|| "unknown host".into(), |n| n.to_string_lossy().into_owned())
}

impl Coordinator {
    /// Serves (rank 0) or reaches the store, and waits until every rank has joined.
    pub fn join(world: &World, timeout: Duration) -> Result<Coordinator> {
        let (addr, port, rank) = (&world.master_addr, world.master_port, world.rank);
        let store = Store::open(addr, port, world.is_root(), timeout).map_err(|e| match world.is_root() {
            true => anyhow!("rank 0 cannot serve the store on {addr}:{port}: {e}"),
            false => anyhow!("rank {rank} cannot reach the store at {addr}:{port}, which rank 0 serves: {e}"),
        })?;
        let host = hostname();
        let lost = |e| anyhow!("rank {rank}: the store at {addr}:{port} went away: {e}");
        store.set(&format!("gymnos/host/{rank}"), host.as_bytes()).map_err(lost)?;
        store.add("gymnos/joined", 1).map_err(lost)?;
        let started = Instant::now();
        loop {
            let joined = store.add("gymnos/joined", 0).map_err(lost)?;
            if joined >= world.world_size as i64 {
                break;
            }
            if started.elapsed() > timeout {
                bail!(
                    "rank {rank} waited {}s at {addr}:{port} for the others: {joined} of {} processes joined (--dist-timeout)",
                    timeout.as_secs(),
                    world.world_size
                );
            }
            std::thread::sleep(POLL);
        }
        let mut coordinator = Coordinator {
            world: world.clone(),
            store,
            host,
            timeout,
            step: Arc::new(AtomicU64::new(0)),
            heartbeat: None,
        };
        coordinator.start_heartbeat()?;
        Ok(coordinator)
    }

    fn start_heartbeat(&mut self) -> Result<()> {
        let store = self.store.try_clone().map_err(|e| anyhow!("a second connection to the store: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (rank, step) = (self.world.rank, self.step.clone());
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("gymnos-heartbeat".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let beat = store.add(&format!("gymnos/alive/{rank}"), 1);
                    let published =
                        store.set(&format!("gymnos/step/{rank}"), step.load(Ordering::Relaxed).to_string().as_bytes());
                    if beat.is_err() || published.is_err() {
                        return; // the store is gone: the training thread finds out by itself
                    }
                    std::thread::sleep(BEAT);
                }
            })
            .map_err(|e| anyhow!("starting the heartbeat thread: {e}"))?;
        self.heartbeat = Some((stop, thread));
        Ok(())
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The host each rank runs on, in rank order.
    pub fn hosts(&self) -> Vec<String> {
        (0..self.world.world_size)
            .map(|r| {
                let bytes = self.store.get(&format!("gymnos/host/{r}"), self.timeout).unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect()
    }

    fn host_of(&self, rank: u32) -> String {
        match self.store.check(&format!("gymnos/host/{rank}")) {
            Ok(true) => self
                .store
                .get(&format!("gymnos/host/{rank}"), Duration::from_secs(1))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| "unknown host".into()),
            _ => "unknown host".into(),
        }
    }

    /// The training step this rank has reached, for the heartbeat to publish.
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    /// Waits for `key`; an `abort` from any rank, or the timeout, ends the wait with an error.
    fn wait_for(&self, key: &str, waiting_for: &str) -> Result<Vec<u8>> {
        let started = Instant::now();
        let rank = self.world.rank;
        let lost = |e| anyhow!("rank {rank}: the store went away while waiting for {waiting_for}: {e}; rank 0 stopped");
        loop {
            if self.store.check(key).map_err(lost)? {
                return self.store.get(key, self.timeout).map_err(lost);
            }
            if self.store.check("gymnos/abort").map_err(lost)? {
                let line = self.store.get("gymnos/abort", self.timeout).map_err(lost)?;
                bail!("{}", String::from_utf8_lossy(&line));
            }
            if started.elapsed() > self.timeout {
                bail!("rank {rank} waited {}s for {waiting_for} (--dist-timeout)", self.timeout.as_secs());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asks every rank the same question: each publishes its answer (`Err`: why it cannot go
    /// on) and reads everyone's. Returns every rank's answer, or the first failure, naming its
    /// rank and host.
    pub fn ask(&self, question: &str, mine: Result<String, String>) -> Result<Vec<String>> {
        let rank = self.world.rank;
        let answer = match mine {
            Ok(text) => Answer::Ready(text),
            Err(why) => Answer::Failed(why),
        };
        let text = serde_json::to_vec(&answer)?;
        self.store.set(&format!("gymnos/{question}/{rank}"), &text).map_err(|e| anyhow!("rank {rank}: {e}"))?;
        let mut answers = Vec::new();
        for r in 0..self.world.world_size {
            let bytes = self.wait_for(&format!("gymnos/{question}/{r}"), &format!("rank {r} to be {question}"))?;
            match serde_json::from_slice::<Answer>(&bytes)? {
                Answer::Ready(text) => answers.push(text),
                Answer::Failed(why) if r == rank => bail!("{why}"),
                Answer::Failed(why) => bail!("rank {r} ({}): {why}", self.host_of(r)),
            }
        }
        Ok(answers)
    }

    /// Rank 0 leaves `value` under `name` for the others.
    pub fn publish(&self, name: &str, value: &[u8]) -> Result<()> {
        self.store.set(&format!("gymnos/value/{name}"), value).map_err(|e| anyhow!("rank 0: publishing {name}: {e}"))
    }

    /// What rank 0 published under `name`.
    pub fn receive(&self, name: &str) -> Result<Vec<u8>> {
        self.wait_for(&format!("gymnos/value/{name}"), &format!("rank 0's {name}"))
    }

    /// Leaves this rank's failure for the others (and, the first time, as everyone's reason to
    /// stop waiting). Best effort: the store may be gone.
    pub fn announce_failure(&self, line: &str) {
        let rank = self.world.rank;
        let named = format!("rank {rank} ({}): {line}", self.host);
        let _ = self.store.set(&format!("gymnos/failed/{rank}"), line.as_bytes());
        if let Ok(1) = self.store.add("gymnos/aborting", 1) {
            let _ = self.store.set("gymnos/abort", named.as_bytes());
        }
    }

    /// Which rank stopped, and why, as far as the store tells: a failure a rank announced, else
    /// the ranks whose heartbeat stopped, else the ranks behind the others (hanging), else that
    /// the store itself is gone (rank 0 stopped).
    pub fn diagnose(&self) -> String {
        let (world, me) = (self.world.world_size, self.world.rank);
        let others: Vec<u32> = (0..world).filter(|&r| r != me).collect();
        let store = &self.store;
        let unreachable = || {
            format!(
                "the store on rank 0 ({}:{}) is unreachable: rank 0 stopped",
                self.world.master_addr, self.world.master_port
            )
        };
        // Give a failing rank the moment it needs to leave its line.
        let announced = |store: &Store| -> Result<Option<String>, ()> {
            for &r in &others {
                if store.check(&format!("gymnos/failed/{r}")).map_err(|_| ())? {
                    let line = store.get(&format!("gymnos/failed/{r}"), Duration::from_secs(1)).map_err(|_| ())?;
                    return Ok(Some(format!(
                        "rank {r} ({}) failed: {}",
                        self.host_of(r),
                        String::from_utf8_lossy(&line)
                    )));
                }
            }
            Ok(None)
        };
        let beats = |store: &Store| -> Result<Vec<i64>, ()> {
            others.iter().map(|r| store.add(&format!("gymnos/alive/{r}"), 0).map_err(|_| ())).collect()
        };
        let Ok(before) = beats(store) else { return unreachable() };
        std::thread::sleep(WATCH);
        match announced(store) {
            Ok(Some(line)) => return line,
            Ok(None) => {}
            Err(()) => return unreachable(),
        }
        let Ok(after) = beats(store) else { return unreachable() };
        let stopped: Vec<u32> =
            others.iter().zip(before.iter().zip(&after)).filter(|(_, (b, a))| a <= b).map(|(r, _)| *r).collect();
        if !stopped.is_empty() {
            let named: Vec<String> = stopped.iter().map(|r| format!("rank {r} ({})", self.host_of(*r))).collect();
            return format!(
                "{} stopped answering: no heartbeat for {:.1}s (killed, frozen, or its machine is gone)",
                named.join(", "),
                WATCH.as_secs_f64()
            );
        }
        let steps: Vec<(u32, u64)> = (0..world)
            .filter_map(|r| {
                let bytes = store.get(&format!("gymnos/step/{r}"), Duration::from_secs(1)).ok()?;
                Some((r, String::from_utf8_lossy(&bytes).parse().ok()?))
            })
            .collect();
        let (least, most) = (steps.iter().map(|s| s.1).min(), steps.iter().map(|s| s.1).max());
        match (least, most) {
            (Some(least), Some(most)) if least < most => {
                let behind: Vec<String> = steps
                    .iter()
                    .filter(|s| s.1 == least)
                    .map(|(r, _)| format!("rank {r} ({})", self.host_of(*r)))
                    .collect();
                format!("{} hangs at step {least} while others reached step {most}", behind.join(", "))
            }
            _ => "every rank is alive: one of them is slower than --dist-timeout allows".into(),
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.heartbeat.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}
