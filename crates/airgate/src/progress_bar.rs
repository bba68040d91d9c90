//! Progress on stderr for long transfers, only when stderr is a terminal, and
//! the one-line summary every transfer ends with.

use std::io::IsTerminal;
use std::time::Duration;

use airgate_oci::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// A byte counter, drawn as a bar when stderr is a terminal.
pub fn bytes(label: &str) -> (Progress, Option<ProgressBar>) {
    if !std::io::stderr().is_terminal() {
        return (Progress::default(), None);
    }
    let bar = ProgressBar::new(0);
    // `wide_bar` takes what the terminal's width leaves after the text, so
    // the line never wraps (indicatif reads the width on every draw).
    let style = ProgressStyle::with_template(
        "{prefix} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    let b = bar.clone();
    let progress = Progress::with_observer(move |done, total| {
        b.set_length(total);
        b.set_position(done);
    });
    (progress, Some(bar))
}

pub fn finish(bar: Option<ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// `1.5 GiB`
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1.2 GiB in 3.4s (350.0 MiB/s)`
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!(
        "{} in {:.1}s ({}/s)",
        human_bytes(bytes),
        secs,
        human_bytes((bytes as f64 / secs) as u64)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
