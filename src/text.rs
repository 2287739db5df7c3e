//! Text shown to people on a terminal: the CLI's tables and `diag`'s report.
//!
//! Device-supplied strings (sysDescr, error messages) can be long and
//! multi-line; a table row must stay one line.

/// One line of at most `max` characters, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    let flat = text.replace(['\r', '\n'], " ");
    if flat.chars().count() <= max {
        return flat;
    }
    let kept: String = flat.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}
