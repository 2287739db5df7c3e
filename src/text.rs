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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clipped_line_is_one_line_of_at_most_max_characters() {
        assert_eq!(clip("RB750Gr3", 32), "RB750Gr3");
        assert_eq!(clip("Cisco IOS\r\nVersion 15", 32), "Cisco IOS  Version 15");
        let long = "é".repeat(40);
        let clipped = clip(&long, 10);
        assert_eq!(clipped.chars().count(), 10);
        assert!(clipped.ends_with('…'));
    }
}
