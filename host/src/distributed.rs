//! Where a process stands in a data-parallel run: its [`World`], read from the variables a
//! launcher sets — `gymnos-host run --nproc-per-node N` and torchrun (`RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), or Slurm's `srun`
//! (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NODEID`, `SLURM_JOB_NODELIST`). Pure:
//! no libtorch, no network; the engine brings up libtorch's c10d from it.

use std::fmt;

/// The port rank 0 serves the store on when nothing sets `MASTER_PORT` (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

/// How the processes of a run were started.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Launcher {
    /// `gymnos-host run --nproc-per-node N`, on this machine.
    Local,
    /// torchrun, or any launcher that sets torchrun's variables.
    Torchrun,
    /// `srun`: a Slurm job step, one task per process.
    Slurm { job_id: String, restart_count: u32 },
}

/// One process's place in a data-parallel run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    pub rank: u32,
    pub world_size: u32,
    /// The rank among the processes of this node: its GPU, when there are GPUs.
    pub local_rank: u32,
    pub local_world_size: u32,
    pub node_rank: u32,
    /// Where rank 0 serves the store every rank meets at.
    pub master_addr: String,
    pub master_port: u16,
    pub launcher: Launcher,
}

/// Why the variables of a launcher do not describe a world.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorldError {
    #[error("--distributed: no launcher's variables are set (torchrun's RANK and WORLD_SIZE, or Slurm's SLURM_PROCID and SLURM_NTASKS under srun); start the processes with `gymnos-host run --nproc-per-node N`, torchrun or srun")]
    NoLauncher,
    #[error("--distributed: {variable}={value:?} is not {expected}")]
    Invalid { variable: &'static str, value: String, expected: &'static str },
    #[error("--distributed: {variable} is not set (the launcher set {others})")]
    Missing { variable: &'static str, others: &'static str },
    #[error("--distributed: rank {rank} is not below the world size {world_size}")]
    RankOutOfRange { rank: u32, world_size: u32 },
    #[error("--distributed: SLURM_JOB_NODELIST {0:?} cannot be read: {1}")]
    NodeList(String, String),
}

impl World {
    /// The world the environment describes: torchrun's variables when `RANK` is set, else
    /// Slurm's when `SLURM_PROCID` is.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<World, WorldError> {
        if var("RANK").is_some() {
            Self::from_torchrun(&var)
        } else if var("SLURM_PROCID").is_some() {
            Self::from_slurm(&var)
        } else {
            Err(WorldError::NoLauncher)
        }
    }

    fn from_torchrun(var: &impl Fn(&str) -> Option<String>) -> Result<World, WorldError> {
        let others = "RANK";
        let rank = number(var, "RANK")?.ok_or(WorldError::Missing { variable: "RANK", others })?;
        let world_size = number(var, "WORLD_SIZE")?.ok_or(WorldError::Missing { variable: "WORLD_SIZE", others })?;
        let local_rank = number(var, "LOCAL_RANK")?.unwrap_or(rank);
        let local_world_size = number(var, "LOCAL_WORLD_SIZE")?.unwrap_or(world_size);
        let node_rank = number(var, "GROUP_RANK")?.unwrap_or(rank / local_world_size.max(1));
        let launcher = match var("GYMNOS_LAUNCHER").as_deref() {
            Some("local") => Launcher::Local,
            _ => Launcher::Torchrun,
        };
        let world = World {
            rank,
            world_size,
            local_rank,
            local_world_size,
            node_rank,
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port: port(var)?.unwrap_or(DEFAULT_PORT),
            launcher,
        };
        world.checked()
    }

    fn from_slurm(var: &impl Fn(&str) -> Option<String>) -> Result<World, WorldError> {
        let others = "SLURM_PROCID";
        let rank = number(var, "SLURM_PROCID")?.ok_or(WorldError::Missing { variable: "SLURM_PROCID", others })?;
        let world_size =
            number(var, "SLURM_NTASKS")?.ok_or(WorldError::Missing { variable: "SLURM_NTASKS", others })?;
        let job_id = var("SLURM_JOB_ID").unwrap_or_default();
        let master_addr = match var("MASTER_ADDR") {
            Some(addr) => addr,
            None => {
                let list = var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST")).unwrap_or_default();
                let nodes = expand_nodelist(&list).map_err(|e| WorldError::NodeList(list.clone(), e))?;
                nodes.into_iter().next().unwrap_or_else(|| "127.0.0.1".into())
            }
        };
        // Two jobs on one node must not meet at one port: derive it from the job.
        let derived = job_id.parse::<u64>().map_or(DEFAULT_PORT, |id| 20000 + (id % 20000) as u16);
        let world = World {
            rank,
            world_size,
            local_rank: number(var, "SLURM_LOCALID")?.unwrap_or(0),
            local_world_size: number(var, "SLURM_NTASKS_PER_NODE")?.unwrap_or(world_size),
            node_rank: number(var, "SLURM_NODEID")?.unwrap_or(0),
            master_addr,
            master_port: port(var)?.unwrap_or(derived),
            launcher: Launcher::Slurm { job_id, restart_count: number(var, "SLURM_RESTART_COUNT")?.unwrap_or(0) },
        };
        world.checked()
    }

    fn checked(self) -> Result<World, WorldError> {
        if self.world_size == 0 {
            return Err(WorldError::Invalid {
                variable: "WORLD_SIZE",
                value: "0".into(),
                expected: "a positive number of processes",
            });
        }
        if self.rank >= self.world_size {
            return Err(WorldError::RankOutOfRange { rank: self.rank, world_size: self.world_size });
        }
        Ok(self)
    }

    /// The number of nodes, as far as this process can tell (the same on every rank).
    pub fn nodes(&self) -> u32 {
        self.world_size.div_ceil(self.local_world_size.max(1))
    }

    pub fn is_root(&self) -> bool {
        self.rank == 0
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rank {} of {} (local rank {} of {} on node {}), meeting at {}:{}",
            self.rank,
            self.world_size,
            self.local_rank,
            self.local_world_size,
            self.node_rank,
            self.master_addr,
            self.master_port
        )
    }
}

fn number(var: &impl Fn(&str) -> Option<String>, variable: &'static str) -> Result<Option<u32>, WorldError> {
    match var(variable) {
        None => Ok(None),
        Some(value) => value.trim().parse().map(Some).map_err(|_| WorldError::Invalid {
            variable,
            value,
            expected: "a whole number",
        }),
    }
}

fn port(var: &impl Fn(&str) -> Option<String>) -> Result<Option<u16>, WorldError> {
    match var("MASTER_PORT") {
        None => Ok(None),
        Some(value) => match value.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(WorldError::Invalid { variable: "MASTER_PORT", value, expected: "a port from 1 to 65535" }),
        },
    }
}

/// Slurm's compressed host list, expanded: `gpu[01-03,07],cpu5` is gpu01, gpu02, gpu03,
/// gpu07, cpu5 (leading zeros kept, as Slurm writes them).
pub fn expand_nodelist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        // The next host expression ends at a comma outside brackets.
        let mut depth = 0usize;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '[' => depth += 1,
                    ']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                c == ',' && depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let (expression, tail) = rest.split_at(end);
        hosts.extend(expand_one(expression)?);
        rest = tail.strip_prefix(',').unwrap_or(tail).trim_start();
    }
    Ok(hosts)
}

/// One `prefix[ranges]suffix` expression (at most one bracket, as Slurm writes host names).
fn expand_one(expression: &str) -> Result<Vec<String>, String> {
    let Some(open) = expression.find('[') else {
        return match expression.contains(']') || expression.is_empty() {
            true => Err(format!("`{expression}` is not a host name")),
            false => Ok(vec![expression.to_string()]),
        };
    };
    let close = expression[open..].find(']').map(|i| open + i).ok_or(format!("`{expression}` has no `]`"))?;
    let (prefix, ranges, suffix) = (&expression[..open], &expression[open + 1..close], &expression[close + 1..]);
    if suffix.contains('[') {
        return Err(format!("`{expression}` has more than one bracket"));
    }
    let mut hosts = Vec::new();
    for range in ranges.split(',') {
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        let width = low.len();
        let (a, b): (u64, u64) = match (low.parse(), high.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(format!("`{range}` is not a range of numbers")),
        };
        if b - a >= 100_000 {
            return Err(format!("`{range}` names more than 100000 hosts"));
        }
        hosts.extend((a..=b).map(|n| format!("{prefix}{n:0width$}{suffix}")));
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn torchrun_s_variables_make_a_world() {
        let world = World::from_env(env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap();
        assert_eq!(
            world,
            World {
                rank: 3,
                world_size: 4,
                local_rank: 1,
                local_world_size: 2,
                node_rank: 1,
                master_addr: "node7".into(),
                master_port: 1234,
                launcher: Launcher::Torchrun
            }
        );
        assert_eq!(world.nodes(), 2);
        let local = World::from_env(env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("GYMNOS_LAUNCHER", "local")])).unwrap();
        assert_eq!(
            (local.launcher, local.master_port, local.master_addr.as_str()),
            (Launcher::Local, 29500, "127.0.0.1")
        );
    }

    #[test]
    fn slurm_s_variables_make_a_world_meeting_at_the_first_node() {
        let world = World::from_env(env(&[
            ("SLURM_PROCID", "9"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "8"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_RESTART_COUNT", "2"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
        ]))
        .unwrap();
        assert_eq!((world.rank, world.world_size, world.local_rank, world.node_rank), (9, 16, 1, 1));
        assert_eq!((world.master_addr.as_str(), world.master_port), ("gpu07", 24242));
        assert_eq!(world.launcher, Launcher::Slurm { job_id: "4242".into(), restart_count: 2 });
    }

    #[test]
    fn a_missing_or_wrong_variable_is_named() {
        assert_eq!(World::from_env(env(&[])).unwrap_err(), WorldError::NoLauncher);
        assert_eq!(
            World::from_env(env(&[("RANK", "0")])).unwrap_err().to_string(),
            "--distributed: WORLD_SIZE is not set (the launcher set RANK)"
        );
        assert_eq!(
            World::from_env(env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).unwrap_err().to_string(),
            "--distributed: RANK=\"x\" is not a whole number"
        );
        assert_eq!(
            World::from_env(env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err(),
            WorldError::RankOutOfRange { rank: 2, world_size: 2 }
        );
        assert!(World::from_env(env(&[("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_PORT", "99999")])).is_err());
    }

    #[test]
    fn node_lists_expand_as_slurm_writes_them() {
        assert_eq!(expand_nodelist("gpu[01-03,07],cpu5").unwrap(), ["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]);
        assert_eq!(expand_nodelist("a[9-11]-ib").unwrap(), ["a9-ib", "a10-ib", "a11-ib"]);
        assert_eq!(expand_nodelist("localhost").unwrap(), ["localhost"]);
        assert!(expand_nodelist("gpu[3-1]").is_err());
        assert!(expand_nodelist("gpu[1-2").is_err());
    }
}
