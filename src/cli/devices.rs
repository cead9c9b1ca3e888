//! `redeemd devices`: the scanners an installer could configure, found in sysfs (no libudev),
//! each printed as a ready-to-paste `[[scanner]]` block.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Where to look; `/sys` and `/dev` except in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Serial,
    Keyboard,
    /// A hidraw node; `pos` when its report descriptor declares usage page 0x8C.
    Hidraw {
        pos: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: Kind,
    /// The kernel's node, e.g. `/dev/ttyACM0`.
    pub node: PathBuf,
    /// A stable name for the config (`/dev/serial/by-id/...`), when there is one.
    pub stable: Option<PathBuf>,
    /// What an installer recognises the device by.
    pub description: String,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The symlink in `dir` that points at a node named `node_name`.
fn link_to(dir: &Path, node_name: &str) -> Option<PathBuf> {
    sorted_entries(dir).into_iter().find(|link| {
        fs::read_link(link)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy() == node_name))
            .unwrap_or(false)
    })
}

/// USB vendor:product, manufacturer, product and serial of the USB device above `dev_dir`.
fn usb_info(dev_dir: &Path) -> Option<String> {
    let mut dir = fs::canonicalize(dev_dir).ok()?;
    for _ in 0..8 {
        if let (Some(v), Some(p)) = (
            read_trim(&dir.join("idVendor")),
            read_trim(&dir.join("idProduct")),
        ) {
            let mut s = format!("USB {v}:{p}");
            for (label, file) in [("", "manufacturer"), ("", "product"), ("serial ", "serial")] {
                if let Some(x) = read_trim(&dir.join(file)) {
                    let _ = write!(s, ", {label}{x}");
                }
            }
            return Some(s);
        }
        dir = dir.parent()?.to_path_buf();
    }
    None
}

fn serial_ports(r: &Roots) -> Vec<Candidate> {
    sorted_entries(&r.sys.join("class/tty"))
        .into_iter()
        .filter_map(|entry| {
            let name = entry.file_name()?.to_string_lossy().to_string();
            if !(name.starts_with("ttyACM") || name.starts_with("ttyUSB")) {
                return None;
            }
            let device = entry.join("device");
            if !device.exists() {
                return None;
            }
            Some(Candidate {
                kind: Kind::Serial,
                node: r.dev.join(&name),
                stable: link_to(&r.dev.join("serial/by-id"), &name),
                description: usb_info(&device).unwrap_or_else(|| "serial port".into()),
            })
        })
        .collect()
}

fn keyboards(r: &Roots) -> Vec<Candidate> {
    sorted_entries(&r.dev.join("input/by-id"))
        .into_iter()
        .filter(|l| l.to_string_lossy().ends_with("-event-kbd"))
        .filter_map(|link| {
            let target = fs::read_link(&link).ok()?;
            let node_name = target.file_name()?.to_string_lossy().to_string();
            let name = read_trim(
                &r.sys
                    .join("class/input")
                    .join(&node_name)
                    .join("device/name"),
            )
            .unwrap_or_else(|| "keyboard".into());
            Some(Candidate {
                kind: Kind::Keyboard,
                node: r.dev.join("input").join(&node_name),
                stable: Some(link),
                description: format!("\"{name}\""),
            })
        })
        .collect()
}

/// Does a HID report descriptor declare usage page 0x8C (bar code scanner)?
pub fn declares_pos_usage_page(desc: &[u8]) -> bool {
    let mut i = 0;
    while i < desc.len() {
        let prefix = desc[i];
        if prefix == 0xFE {
            // Long item: size in the next byte.
            let size = desc.get(i + 1).copied().unwrap_or(0) as usize;
            i += 3 + size;
            continue;
        }
        let size = match prefix & 0x03 {
            3 => 4,
            n => n as usize,
        };
        // Global item "Usage Page": tag 0000, type 01.
        if prefix & 0xFC == 0x04 {
            let mut v: u32 = 0;
            for (k, b) in desc.iter().skip(i + 1).take(size).enumerate() {
                v |= u32::from(*b) << (8 * k);
            }
            if v == 0x8C {
                return true;
            }
        }
        i += 1 + size;
    }
    false
}

fn hidraws(r: &Roots) -> Vec<Candidate> {
    sorted_entries(&r.sys.join("class/hidraw"))
        .into_iter()
        .filter_map(|entry| {
            let name = entry.file_name()?.to_string_lossy().to_string();
            let device = entry.join("device");
            let desc = fs::read(device.join("report_descriptor")).unwrap_or_default();
            // The HID device directory is named BUS:VENDOR:PRODUCT.INSTANCE.
            let ids = fs::canonicalize(&device)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
                .and_then(|n| {
                    let mut parts = n.split([':', '.']);
                    let (_, v, p) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(format!("USB {}:{}", v.to_lowercase(), p.to_lowercase()))
                });
            Some(Candidate {
                kind: Kind::Hidraw {
                    pos: declares_pos_usage_page(&desc),
                },
                node: r.dev.join(&name),
                stable: None,
                description: ids.unwrap_or_else(|| "HID device".into()),
            })
        })
        .collect()
}

pub fn discover(r: &Roots) -> Vec<Candidate> {
    let mut v = serial_ports(r);
    v.extend(keyboards(r));
    v.extend(hidraws(r));
    v
}

/// The candidates as commented, ready-to-paste `[[scanner]]` blocks.
pub fn render(cands: &[Candidate]) -> String {
    let mut out = String::new();
    if cands.is_empty() {
        out.push_str(
            "# No scanners found: no USB serial ports (ttyACM*, ttyUSB*), no keyboards under\n\
             # /dev/input/by-id/*-event-kbd, no hidraw devices. Is the scanner plugged in, and\n\
             # may this user read /sys and /dev? See hardware/README.md.\n",
        );
        return out;
    }
    for c in cands {
        let node_name = c
            .node
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let path = c.stable.as_ref().unwrap_or(&c.node).display().to_string();
        let (header, kind, extra) = match c.kind {
            Kind::Serial => (
                "serial scanner (RS-232 / USB-CDC)",
                "serial",
                "baud = 9600\n",
            ),
            Kind::Keyboard => (
                "keyboard-wedge scanner (or a real keyboard: check the name)",
                "keyboard",
                "layout = \"us\"\ngrab = true\n",
            ),
            Kind::Hidraw { pos: true } => (
                "HID-POS scanner (usage page 0x8C)",
                "hidpos",
                "report_id = 2\n",
            ),
            Kind::Hidraw { pos: false } => {
                let _ = writeln!(
                    out,
                    "# {}: {} — hidraw, but its report descriptor does not declare usage page 0x8C (not HID-POS)\n",
                    c.node.display(),
                    c.description
                );
                continue;
            }
        };
        let _ = writeln!(out, "# {header}: {} ({})", c.description, c.node.display());
        let _ = write!(
            out,
            "[[scanner]]\nname = \"{node_name}\"\ntype = \"{kind}\"\npath = \"{path}\"\n{extra}\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_page_detection() {
        // Usage Page (Bar Code Scanner) 0x8C as a 1-byte and a 2-byte item.
        assert!(declares_pos_usage_page(&[
            0x05, 0x8C, 0x09, 0x02, 0xA1, 0x01
        ]));
        assert!(declares_pos_usage_page(&[0x06, 0x8C, 0x00, 0x09, 0x02]));
        // Keyboard (page 0x01 then 0x07).
        assert!(!declares_pos_usage_page(&[
            0x05, 0x01, 0x09, 0x06, 0xA1, 0x01, 0x05, 0x07
        ]));
        // A data byte 0x8C that is not a usage page.
        assert!(!declares_pos_usage_page(&[0x09, 0x8C, 0x15, 0x00]));
        assert!(!declares_pos_usage_page(&[0x06]));
    }
}
