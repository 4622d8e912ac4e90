//! How a process ended: [`ExitStatus`]. A leaf module (it imports nothing of this
//! crate), so that both the errors that carry a status and the processes and monitor
//! that produce one can depend on it without depending on each other.

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// It exited with this code (0 is success; a panicking target exits with 1).
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the code, or the negated signal number.
    ///
    /// ```
    /// use procactor_core::ExitStatus;
    /// assert_eq!(ExitStatus::Signal(15).python_exitcode(), -15);
    /// assert_eq!(ExitStatus::Code(1).python_exitcode(), 1);
    /// ```
    pub fn python_exitcode(&self) -> i32 {
        match *self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_python_codes() {
        assert_eq!(ExitStatus::Code(0).python_exitcode(), 0);
        assert!(ExitStatus::Code(0).success());
        assert_eq!(ExitStatus::Signal(9).python_exitcode(), -9);
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9");
    }
}
