//! The local executor: trials as child processes of this one, `parallel` at once, each pinned
//! to its share of the machine (CPU threads, and a GPU when there are GPUs).

use std::{
    fs::{self, OpenOptions},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use super::{
    executor::{HostCall, Launch, Task},
    state::SweepDir,
};

/// What each of the `parallel` slots gives its trial: CPU threads, shared by its processes, and
/// with GPUs one per process.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub parallel: u32,
    pub threads: u32,
    pub processes: u32,
}

/// Runs `tasks`; `done(trial, succeeded)` is called as each ends. Stops launching when `stop`
/// is set, passes Ctrl-C on to the running trials (they stop after their batch, resumable),
/// and waits for them.
pub fn run(
    tasks: Vec<Task>,
    slots: Slots,
    call: &HostCall,
    dir: &SweepDir,
    stop: &AtomicBool,
    mut done: impl FnMut(u32, bool),
) -> std::io::Result<()> {
    let Slots { parallel, threads, processes } = slots;
    let gpus = super::executor::gpu_count();
    let launch = if processes > 1 { Launch::Local(processes) } else { Launch::Single };
    // Each process of a trial gets its share of the trial's threads.
    let process_threads = (threads / processes).max(1).to_string();
    let mut queue = tasks.into_iter();
    // (slot, trial, child)
    let mut running: Vec<(u32, u32, Child)> = Vec::new();
    let mut signalled = false;
    loop {
        while !stop.load(Ordering::Relaxed) && running.len() < parallel as usize {
            let Some(task) = queue.next() else { break };
            let slot = (0..parallel).find(|s| running.iter().all(|r| r.0 != *s)).expect("a free slot");
            let log = dir.log(task.trial);
            if let Some(parent) = log.parent() {
                fs::create_dir_all(parent)?;
            }
            let out = OpenOptions::new().create(true).append(true).open(&log)?;
            let mut command = Command::new(&call.host);
            command
                .args(call.args(&task, launch))
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .env("OMP_NUM_THREADS", &process_threads)
                .env("MKL_NUM_THREADS", &process_threads);
            if gpus > 0 {
                // The slot's GPUs: one per process.
                let ids: Vec<String> = (0..processes).map(|p| ((slot * processes + p) % gpus).to_string()).collect();
                command.env("CUDA_VISIBLE_DEVICES", ids.join(","));
            }
            tracing::info!("trial {}: started ({:?})", task.trial, task.action);
            running.push((slot, task.trial, command.spawn()?));
        }
        if running.is_empty() {
            return Ok(());
        }
        if stop.load(Ordering::Relaxed) && !signalled {
            signalled = true;
            for (_, _, child) in &running {
                // SAFETY: a signal to our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            match running[i].2.try_wait()? {
                Some(status) => {
                    let (_, trial, _) = running.swap_remove(i);
                    done(trial, status.success());
                }
                None => i += 1,
            }
        }
    }
}
