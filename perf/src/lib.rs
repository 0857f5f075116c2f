//! Benchmark harness and traffic tools.

pub mod frames;
