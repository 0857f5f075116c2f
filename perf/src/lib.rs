//! Benchmark harness and traffic tools.

pub mod frames;
pub mod procs;
pub mod topology;
