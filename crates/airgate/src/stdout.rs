//! Data on standard output, and a quiet exit when its reader goes away.
//!
//! Why this exists: `println!` panics when stdout is a closed pipe, so
//! `airgate get apps -o yaml | head -1` exited 101 with a panic message.
//! Every command prints its data through [`out!`], which turns a closed pipe
//! into [`ClosedPipe`]; `main` exits quietly on it, as `cat` and `rg` do.

use std::io::Write;

/// Standard output was closed by its reader.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct ClosedPipe;

/// Writes one line to standard output.
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    checked(
        stdout
            .write_fmt(args)
            .and_then(|()| stdout.write_all(b"\n")),
    )
}

/// Writes `text` as it is (it ends its own lines).
pub fn text(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    checked(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    )
}

fn checked(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
        Err(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// `println!` for data: returns an error instead of panicking (use `?`).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}
