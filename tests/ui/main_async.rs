#[procactor::main]
async fn main() {}
