//! What a campaign's messages are for: Meta's template categories, which are also
//! the consent purposes they need and what frequency caps and prices are counted
//! by. Below the campaign file, so the modules it configures can name a category
//! without importing it.

use std::fmt;

use serde::Deserialize;

/// What the messages are for; it is also the consent purpose they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Marketing => "marketing",
            Category::Utility => "utility",
            Category::Authentication => "authentication",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
