//! The `redeemd` binary run as a user runs it: `redeemd(["log", "--json"]).config(&path)`,
//! then anything a `Command` takes (`env`, `stdin`, `output`, `spawn`).

use std::ffi::OsStr;
use std::ops::{Deref, DerefMut};
use std::process::Command;

/// One run of the `redeemd` command line.
pub struct Cli(Command);

/// `redeemd` with these arguments.
pub fn redeemd<I, S>(args: I) -> Cli
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(super::bin());
    c.args(args);
    Cli(c)
}

impl Cli {
    /// `--config path`.
    pub fn config(mut self, path: impl AsRef<OsStr>) -> Cli {
        self.0.arg("--config").arg(path);
        self
    }
}

impl Deref for Cli {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.0
    }
}

impl DerefMut for Cli {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.0
    }
}

impl From<Cli> for Command {
    fn from(c: Cli) -> Command {
        c.0
    }
}
