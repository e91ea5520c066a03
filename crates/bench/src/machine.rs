//! The machine a benchmark ran on: cores, CPU model and memory, read from the system.
//!
//! Owns: reading `/proc/cpuinfo` and `/proc/meminfo` (Linux); elsewhere the fields say
//! "unknown". Must not touch anything else of the system.

use std::fmt;

use serde::Serialize;

/// Cores, CPU model and memory.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Machine {
    /// Cores this process may use (what `nproc` says).
    pub cores: usize,
    /// The CPU's model name from `/proc/cpuinfo`.
    pub cpu: String,
    /// Memory in GiB from `/proc/meminfo`.
    pub ram_gib: f64,
}

impl Machine {
    /// This machine.
    pub fn current() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| cpu_model(&t))
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let ram_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| mem_total_kib(&t))
            .map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0));
        Machine {
            cores,
            cpu,
            ram_gib,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cores, {}, {:.1} GiB RAM",
            self.cores, self.cpu, self.ram_gib
        )
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_files() {
        let cpu = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpu).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor: 0\n"), None);
        let mem = "MemTotal:       24609828 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total_kib(mem), Some(24_609_828));
        let m = Machine {
            cores: 2,
            cpu: "X".into(),
            ram_gib: 23.47,
        };
        assert_eq!(m.to_string(), "2 cores, X, 23.5 GiB RAM");
    }
}
