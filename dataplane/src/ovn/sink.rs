//! The dataplane's [`PolicySink`]: ACL rules through each acl node's hub
//! ([`pipeline::acl::AclHub::apply_config`]: a membership update when only the members of
//! address sets and port groups changed, e.g. a pod's address in a derived `$<pg>_ip4`, else
//! a rule set built on the follower thread; the follower's membership-only batches through
//! [`pipeline::acl::AclHub::update_members`]; each is adopted by each worker between bursts)
//! and services through the lb node's shared control
//! ([`pipeline::lb::LbControl::update`]): the same hitless paths as a config reload.

use std::time::Duration;

use pipeline::acl::{AclConfig, Applied, MemberChange};
use pipeline::lb::service::{DownPolicy, ServiceConfig};
use pipeline::lb::LbControl;

use super::follow::PolicySink;

/// How long a publication waits for the workers to switch (they switch anyway).
const PUBLISH_WAIT: Duration = Duration::from_millis(250);

/// Publishes into the running dataplane.
pub struct DataplaneSink {
    /// The lb node's `control` name, by node.
    pub lb_controls: Vec<(String, String)>,
}

impl PolicySink for DataplaneSink {
    fn publish_acl(&mut self, node: &str, cfg: &AclConfig) -> Result<String, String> {
        let hub = crate::dpdk::acl::acl_hub(node).ok_or("no running hub")?;
        let applied = hub
            .apply_config(cfg, PUBLISH_WAIT)
            .map_err(|e| e.to_string())?;
        Ok(crate::reload::describe_applied(
            node,
            &applied,
            cfg.rules.len(),
        ))
    }

    fn update_members(&mut self, node: &str, changes: &[MemberChange]) -> Result<String, String> {
        let hub = crate::dpdk::acl::acl_hub(node).ok_or("no running hub")?;
        let report = hub
            .update_members(changes, PUBLISH_WAIT)
            .map_err(|e| e.to_string())?;
        let rules = hub.current().acl.rules.acls().len();
        Ok(crate::reload::describe_applied(
            node,
            &Applied::Members(report),
            rules,
        ))
    }

    fn publish_services(
        &mut self,
        node: &str,
        services: &[ServiceConfig],
    ) -> Result<String, String> {
        let name = self
            .lb_controls
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, c)| c.as_str())
            .ok_or("the lb node has no `control` name, so its services cannot change live")?;
        let control = LbControl::named(name).ok_or("no running load balancer")?;
        let mut cfg = control.config();
        cfg.services = services.to_vec();
        // OVN's semantics unless the node's config chose: a connection whose backend left
        // `vips` keeps going (OVS's conntrack keeps its NAT).
        cfg.down_backend.get_or_insert(DownPolicy::Keep);
        let generation = control
            .update(&cfg)
            .map_err(|e| format!("{}: {}", e.key, e.reason))?;
        Ok(format!(
            "lb node `{node}`: generation {generation}, {} services, {} backends",
            services.len(),
            services.iter().map(|s| s.backends.len()).sum::<usize>()
        ))
    }
}
