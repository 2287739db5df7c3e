//! Placeholder replaced by the comparison benchmark (issue 8).
fn main() {}
