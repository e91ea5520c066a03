//! Progress bars (indicatif) on standard error while a benchmark runs.
//!
//! Owns: the bars' look. They draw only when standard error is a terminal, so `--json` output
//! piped to a program and the smoke tests see none. Must not touch standard output (the
//! report goes there).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps labelled `msg`, drawn on standard error.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.set_message(msg.to_owned());
    bar
}
