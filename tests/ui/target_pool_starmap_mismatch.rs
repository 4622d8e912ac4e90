// starmap with tuples that do not fit the function.
fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn main() {
    procactor::init();
    let pool = procactor::Pool::new(1).unwrap();
    let _ = pool.starmap(mul, vec![(1u64, 2u64, 3u64)]);
}
