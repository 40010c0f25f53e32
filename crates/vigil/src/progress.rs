//! Progress bars for long commands: drawn on a terminal (stderr), hidden in pipes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `total` units with `template` (a spinner when the total is unknown), or a hidden
/// one when stderr is not a terminal.
pub(crate) fn bar(total: Option<u64>, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    b.set_style(ProgressStyle::with_template(template).expect("valid template"));
    b
}
