//! One complete read from a scanner, as the intake receives it.

use crate::clock::Millis;
use crate::model::frame::Frame;
use std::sync::Arc;

/// One complete read from a scanner.
#[derive(Debug, Clone)]
pub struct Scan {
    pub scanner: Arc<str>,
    pub frame: Frame,
    /// When the read completed.
    pub at: Millis,
}
