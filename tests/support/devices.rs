//! Scanner devices: a pseudo-terminal for serial scanners, FIFOs for input and hidraw
//! devices.

use nix::fcntl::OFlag;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A pseudo-terminal standing in for a serial scanner. The daemon opens the slave side by
/// path; the test writes what the scanner would send into the master side.
///
/// Both ends are close-on-exec: a daemon spawned by a test must not inherit a master, or
/// closing the test's end would never look like an unplugged scanner.
pub struct Pty {
    master: Mutex<PtyMaster>,
    /// Held open so the pty lives while the daemon reopens it.
    _slave: std::fs::File,
    pub path: String,
}

impl Pty {
    pub fn new() -> Pty {
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = posix_openpt(flags).expect("posix_openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let path = ptsname_r(&master).expect("ptsname");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_flags(OFlag::O_NOCTTY | OFlag::O_CLOEXEC))
            .open(&path)
            .expect("open pty slave");
        let mut t = termios::tcgetattr(&slave).expect("tcgetattr");
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&slave, termios::SetArg::TCSANOW, &t).expect("tcsetattr");
        Pty {
            master: Mutex::new(master),
            _slave: slave,
            path,
        }
    }

    /// Sends a code as a scanner configured with a CR LF suffix would.
    pub fn scan(&self, code: &str) {
        self.write_raw(format!("{code}\r\n").as_bytes());
    }

    pub fn write_raw(&self, bytes: &[u8]) {
        let mut m = self.master.lock().unwrap();
        m.write_all(bytes).expect("write to pty");
        m.flush().expect("flush pty");
    }

    /// Reads what the daemon wrote back to the scanner, waiting up to `within` for `n` bytes.
    pub fn read_back(&self, n: usize, within: Duration) -> Vec<u8> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::io::Read;
        use std::os::fd::AsFd;
        let deadline = Instant::now() + within;
        let mut m = self.master.lock().unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ready = {
                let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
                let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32)
                    .unwrap_or(PollTimeout::NONE);
                poll(&mut fds, ms).unwrap_or(0)
            };
            if ready > 0 {
                let mut buf = [0u8; 64];
                let k = m.read(&mut buf).unwrap_or(0);
                out.extend_from_slice(&buf[..k]);
            }
        }
        out
    }
}

/// A FIFO standing in for an input or hidraw device: the daemon opens it to read; the test
/// opens the write end once the daemon has connected. Closing the writer looks like an
/// unplugged device.
pub struct Fifo {
    pub path: PathBuf,
    writer: Mutex<Option<std::fs::File>>,
}

impl Fifo {
    pub fn new(dir: &Path, name: &str) -> Fifo {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        Fifo {
            path,
            writer: Mutex::new(None),
        }
    }

    /// Writes bytes, opening the write end first if needed (the daemon must be reading).
    pub fn write(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().unwrap();
        if w.is_none() {
            *w = Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .expect("open FIFO for writing"),
            );
        }
        let f = w.as_mut().unwrap();
        f.write_all(bytes).expect("write FIFO");
        f.flush().expect("flush FIFO");
    }

    /// Closes the write end: the reader sees end-of-file, like an unplugged device.
    pub fn unplug(&self) {
        self.writer.lock().unwrap().take();
    }
}

fn libc_flags(f: OFlag) -> i32 {
    f.bits()
}
