//! Benchmark harness and traffic tools.

pub mod frames;
pub mod ovs;
pub mod procs;
pub mod report;
pub mod topology;
pub mod traffic;
pub mod vm;
