//! Placeholder: the benchmark harness is being written (see issue 6).
fn main() {
    println!("twofold_bench: not yet implemented");
}
