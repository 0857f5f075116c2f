//! NB `Load_Balancer` rows to services of our load balancer (as the TOML `[[services]]`
//! path builds them): one service per `vips` entry.
//!
//! - `vips` key `VIP`, `VIP:port` or `[VIP6]:port`; value `IP[:port],IP[:port]` (spaces
//!   around commas allowed); a VIP without a port is our all-ports service.
//! - `protocol` `tcp` / `udp` / `sctp` (empty: tcp). SCTP ports are NATed with the CRC32c
//!   updated; an association is tracked with UDP's idle timeout (OVS's conntrack has an SCTP
//!   state machine, ours does not).
//! - `selection_fields` to our hash key: the destination of one service is fixed, so
//!   `{ip_src, ip_dst}` selects like `src_ip` and `{ip_src, ip_dst, tp_src, tp_dst}` (or none,
//!   OVN's dp_hash) like `five_tuple`; `{ip_src, tp_src}` is `src_ip_port`. `affinity_timeout`
//!   (client affinity) is approximated by `src_ip` (consistent hashing on the client).
//! - `options:template=true` (VIPs from chassis template variables) is not compiled.

use std::collections::BTreeMap;
use std::net::IpAddr;

use pipeline::lb::service::{BackendConfig, LbConfig, ServiceConfig};
use pipeline::lb::{HashMode, DEFAULT_TABLE_SIZE};

use super::rows;
use crate::ovn::replica::Row;

/// An `IP[:port]` / `[IP6]:port` endpoint.
pub fn parse_endpoint(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    let t = text.trim();
    let bad = || format!("'{t}' is not IP, IP:port or [IPv6]:port");
    if let Some(rest) = t.strip_prefix('[') {
        let (addr, port) = rest.split_once("]:").ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok((addr, Some(port)));
    }
    if let Ok(a) = t.parse::<IpAddr>() {
        return Ok((a, None));
    }
    let (addr, port) = t.rsplit_once(':').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if addr.is_ipv6() {
        return Err(bad());
    }
    Ok((addr, Some(port.parse().map_err(|_| bad())?)))
}

/// The hash key for `selection_fields` (and `affinity_timeout`).
pub fn hash_mode(fields: &[&str], affinity: bool, all_ports: bool) -> HashMode {
    let has = |f: &str| fields.contains(&f);
    let ip_src = has("ip_src") || has("ipv6_src");
    if affinity {
        return HashMode::SrcIp;
    }
    if fields.is_empty() || (has("tp_dst") && all_ports) {
        return HashMode::FiveTuple;
    }
    match (ip_src, has("tp_src")) {
        (true, true) if has("tp_dst") => HashMode::FiveTuple,
        (true, true) => HashMode::SrcIpPort,
        (true, false) => HashMode::SrcIp,
        _ => HashMode::FiveTuple,
    }
}

/// The services of one load balancer, each with the `vips` key it came from, or why none.
pub fn services(uuid: &str, lb: &Row) -> Result<Vec<(String, ServiceConfig)>, String> {
    let protocol = match rows::text(lb, "protocol") {
        "" | "tcp" => pipeline::lb::service::L4Protocol::Tcp,
        "udp" => pipeline::lb::service::L4Protocol::Udp,
        "sctp" => pipeline::lb::service::L4Protocol::Sctp,
        other => return Err(format!("protocol {other} is not compiled")),
    };
    let options = rows::map(lb, "options");
    if options.get("template").map(String::as_str) == Some("true") {
        return Err("template load balancers (chassis template variables) are not compiled".into());
    }
    let affinity = options
        .get("affinity_timeout")
        .and_then(|t| t.parse::<u32>().ok())
        .is_some_and(|t| t > 0);
    let fields = rows::strings(lb, "selection_fields");
    let name = match rows::text(lb, "name") {
        "" => uuid,
        n => n,
    };
    let mut out = Vec::new();
    for (key, value) in rows::map(lb, "vips") {
        let (vip, port) = parse_endpoint(&key).map_err(|e| format!("vips key: {e}"))?;
        let mut backends = Vec::new();
        for b in value.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            let (addr, bport) = parse_endpoint(b).map_err(|e| format!("vips[{key}]: {e}"))?;
            if bport.is_some() != port.is_some() {
                return Err(format!(
                    "vips[{key}]: backend '{b}' and the VIP must both have a port or neither"
                ));
            }
            backends.push(BackendConfig::new(addr, bport));
        }
        let svc = ServiceConfig {
            name: format!("{name}/{}/{key}", rows::text(lb, "protocol")),
            vip,
            protocol,
            port,
            hash: hash_mode(&fields, affinity, port.is_none()),
            table_size: DEFAULT_TABLE_SIZE,
            forwarding: Default::default(),
            // OVN's `options:reject=true` (ovn-kubernetes sets it on every service): a
            // VIP without a backend answers instead of dropping.
            reject: options.get("reject").map(String::as_str) == Some("true"),
            backends,
        };
        let alone = LbConfig {
            services: vec![svc.clone()],
            ..LbConfig::default()
        };
        alone
            .validate()
            .map_err(|e| format!("vips[{key}]: {}: {}", e.key, e.reason))?;
        out.push((key, svc));
    }
    Ok(out)
}

/// Origin of each service: the NB row it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbOrigin {
    /// The `Load_Balancer` UUID.
    pub uuid: String,
    /// Its `name`.
    pub name: String,
    /// The `vips` key.
    pub vip: String,
    /// `options` (e.g. `reject`, `skip_snat`, `affinity_timeout`).
    pub options: BTreeMap<String, String>,
    /// `external_ids` (Octavia's `neutron:vip`, ovn-kubernetes's `k8s.ovn.org/owner`).
    pub external_ids: BTreeMap<String, String>,
}

impl LbOrigin {
    /// One line: `NB Load_Balancer <uuid> ("name"), vips key <vip>, k=v...` (its
    /// `external_ids`).
    pub fn describe(&self) -> String {
        let mut s = format!("NB Load_Balancer {}", self.uuid);
        if !self.name.is_empty() {
            s += &format!(" ({:?})", self.name);
        }
        s += &format!(", vips key {}", self.vip);
        for (k, v) in &self.external_ids {
            s += &format!(", {k}={v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_hash_keys() {
        assert_eq!(
            parse_endpoint("10.0.0.10:80").unwrap(),
            ("10.0.0.10".parse().unwrap(), Some(80))
        );
        assert_eq!(
            parse_endpoint(" [fd00::1]:443").unwrap(),
            ("fd00::1".parse().unwrap(), Some(443))
        );
        assert_eq!(
            parse_endpoint("fd00::1").unwrap(),
            ("fd00::1".parse().unwrap(), None)
        );
        assert!(parse_endpoint("10.0.0.10:http").is_err());
        assert!(parse_endpoint("fd00::1:80").is_ok(), "a bare IPv6 address");
        assert!(parse_endpoint("[fd00::1]").is_err());
        assert_eq!(hash_mode(&[], false, false), HashMode::FiveTuple);
        assert_eq!(
            hash_mode(&["ip_src", "ip_dst"], false, false),
            HashMode::SrcIp
        );
        assert_eq!(
            hash_mode(&["ip_src", "ip_dst", "tp_src", "tp_dst"], false, false),
            HashMode::FiveTuple
        );
        assert_eq!(
            hash_mode(&["ip_src", "tp_src"], false, false),
            HashMode::SrcIpPort
        );
        assert_eq!(hash_mode(&[], true, false), HashMode::SrcIp);
    }
}
