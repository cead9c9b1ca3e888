//! Keyboard layouts, named in the config and applied by the keyboard decoder.

/// Keyboard layouts a wedge scanner may be programmed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Us,
    Uk,
    De,
    Fr,
}

impl Layout {
    pub const NAMES: &'static str = "us, uk, de, fr";

    pub fn parse(name: &str) -> Option<Layout> {
        match name {
            "us" => Some(Layout::Us),
            "uk" | "gb" => Some(Layout::Uk),
            "de" => Some(Layout::De),
            "fr" => Some(Layout::Fr),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Us => "us",
            Layout::Uk => "uk",
            Layout::De => "de",
            Layout::Fr => "fr",
        }
    }
}
