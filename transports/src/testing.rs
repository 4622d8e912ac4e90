//! Helpers for tests of this crate and the crates above it (not part of the API).

/// Starts `sh -c script` with its standard output piped and reads the first line, which
/// the script must make the pid of a process it started (`cmd & echo $!`): a process that
/// is not our child, whose parent (the shell) decides when to reap it. Returns the shell
/// and that pid.
///
/// # Panics
///
/// `sh` cannot be started, or its first line is not a pid.
pub fn shell_and_its_child(script: &str) -> (std::process::Child, u32) {
    use std::io::BufRead;
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    std::io::BufReader::new(sh.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the pid line");
    let pid = line.trim().parse().expect("a pid");
    (sh, pid)
}
