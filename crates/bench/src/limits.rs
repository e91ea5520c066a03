//! The open-file limit, raised when a benchmark needs more descriptors than the soft limit
//! allows (10,000 devices and the relay's side of their connections in one process).
//!
//! Owns: reading and raising `RLIMIT_NOFILE` for this process (rlimit crate, no unsafe code).
//! Must not touch any other limit or process.

use rlimit::Resource;

use crate::BenchError;

/// Raises this process's open-file limit toward `need`: the soft limit to the hard limit when
/// the soft one is lower than `need`, and the hard limit too when that is lower still (which
/// only a privileged process may do). Returns the soft limit now in force and, when anything
/// changed or could not be changed, a sentence for the report.
///
/// # Errors
/// [`BenchError::Setup`] when the limit cannot be read or set at all.
pub fn raise_open_files(need: u64) -> Result<(u64, Option<String>), BenchError> {
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| BenchError::Setup(format!("cannot read the open-file limit: {e}")))?;
    if soft >= need {
        return Ok((soft, None));
    }
    if hard < need && Resource::NOFILE.set(need, need).is_ok() {
        return Ok((
            need,
            Some(format!(
                "raised the open-file limit from soft {soft} / hard {hard} to {need} (the hard \
                 limit was too low; this process may raise it)"
            )),
        ));
    }
    Resource::NOFILE.set(hard, hard).map_err(|e| {
        BenchError::Setup(format!(
            "the benchmark needs {need} open files; the soft limit is {soft} and raising it to \
             the hard limit {hard} failed: {e}"
        ))
    })?;
    let short = if hard < need {
        format!(
            "; the hard limit is below the {need} needed and this process may not raise it \
             (ulimit -Hn {need} as root, or LimitNOFILE, lifts it)"
        )
    } else {
        format!(" (needed {need})")
    };
    Ok((
        hard,
        Some(format!(
            "raised the open-file soft limit from {soft} to the hard limit {hard}{short}"
        )),
    ))
}
