//! Policy evaluator benchmark (filled in by the lead).
fn main() {}
