use procactor::process_actor;

#[process_actor]
union Bits {
    int: u32,
    float: f32,
}

fn main() {
    let _ = Bits { int: 1 };
}
