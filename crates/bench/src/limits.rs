//! The open-file limit, raised when a benchmark needs more descriptors than the soft limit
//! allows (10,000 devices and the relay's side of their connections in one process).
//!
//! Owns: reading and raising `RLIMIT_NOFILE` for this process (rlimit crate, no unsafe code).
//! Must not touch any other limit or process.

use rlimit::Resource;

use crate::BenchError;

/// Makes sure this process may open `need` files: raises the soft limit to the hard limit
/// when it is lower than `need`, and the hard limit too when that is lower still (which only
/// a privileged process may do). Returns a sentence for the report when it changed anything.
///
/// # Errors
/// [`BenchError::Setup`] when the limit cannot be raised far enough, saying by how much.
pub fn ensure_open_files(need: u64) -> Result<Option<String>, BenchError> {
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| BenchError::Setup(format!("cannot read the open-file limit: {e}")))?;
    if soft >= need {
        return Ok(None);
    }
    if hard >= need {
        Resource::NOFILE.set(hard, hard).map_err(|e| {
            BenchError::Setup(format!(
                "the benchmark needs {need} open files; the soft limit is {soft} and raising it \
                 to the hard limit {hard} failed: {e}"
            ))
        })?;
        return Ok(Some(format!(
            "raised the open-file soft limit from {soft} to the hard limit {hard} (needed {need})"
        )));
    }
    match Resource::NOFILE.set(need, need) {
        Ok(()) => Ok(Some(format!(
            "raised the open-file limit from soft {soft} / hard {hard} to {need} (the hard limit \
             was too low; this process is privileged)"
        ))),
        Err(e) => Err(BenchError::Setup(format!(
            "the benchmark needs {need} open files but the hard limit is {hard} and cannot be \
             raised ({e}); raise it (ulimit -Hn {need} as root, or LimitNOFILE) and run again"
        ))),
    }
}
