//! The dataplane: EAL, mempools, ports, lcores, config, stats and control.
//!
//! A [`config::ConfigFile`] is validated into a [`plan::Plan`] without touching DPDK;
//! [`runtime::run`] then brings the plan up on real DPDK and runs one [`worker::Worker`] per
//! worker lcore. All `unsafe` code is in [`dpdk`].

pub mod acl_log;
pub mod config;
pub mod control;
pub mod counters;
pub mod device;
pub mod discovery;
pub mod dpdk;
pub mod hugepage_plan;
pub mod hugepages;
pub mod metrics_export;
pub mod nodes;
pub mod ovn;
pub mod plan;
pub mod reload;
pub mod runtime;
pub mod worker;
