//! PCI and MAC address validation.

/// Validate a PCI address in full `DDDD:BB:DD.F` form (domain, bus, device, function, hex)
/// and return it in lower case. Device is at most `1f`, function at most 7.
pub fn normalize_pci_address(s: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "`{s}` is not a PCI address in DDDD:BB:DD.F form: {why}"
        ))
    };
    let Some((head, func)) = s.rsplit_once('.') else {
        return bad("no `.F` function part");
    };
    let parts: Vec<&str> = head.split(':').collect();
    let [domain, bus, dev] = parts.as_slice() else {
        return bad("expected three `:`-separated parts before the function");
    };
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(domain, 4) {
        return bad("domain must be 4 hex digits");
    }
    if !hex(bus, 2) {
        return bad("bus must be 2 hex digits");
    }
    if !hex(dev, 2) || u8::from_str_radix(dev, 16).map_or(true, |d| d > 0x1f) {
        return bad("device must be 2 hex digits, at most 1f");
    }
    if func.len() != 1 || !matches!(func.as_bytes().first(), Some(b'0'..=b'7')) {
        return bad("function must be one digit 0-7");
    }
    Ok(s.to_ascii_lowercase())
}

/// Whether `s` is a PCI address in full `DDDD:BB:DD.F` form.
pub fn is_pci_address(s: &str) -> bool {
    normalize_pci_address(s).is_ok()
}

/// Validate a MAC address `xx:xx:xx:xx:xx:xx` (either case) and return it in lower case.
pub fn normalize_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("`{s}` is not a MAC address (xx:xx:xx:xx:xx:xx)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert_eq!(
            normalize_pci_address("0000:3B:02.1").as_deref(),
            Ok("0000:3b:02.1")
        );
        assert!(is_pci_address("0000:00:1f.7"));
        for bad in [
            "",
            "3b:02.1",
            "0000:3b:02",
            "0000:3b:02.8",
            "0000:3b:20.0",
            "000g:3b:02.1",
            "0000:3b:02.1 ",
            "0000:3b:02.10",
            "0000:3b:02:1.0",
            "é000:3b:02.1",
        ] {
            let e = normalize_pci_address(bad).unwrap_err();
            assert!(e.contains("not a PCI address"), "{bad}: {e}");
        }
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("FA:16:3E:11:22:02").as_deref(),
            Ok("fa:16:3e:11:22:02")
        );
        for bad in [
            "",
            "fa:16:3e:11:22",
            "fa:16:3e:11:22:0g",
            "fa-16-3e-11-22-02",
            "fa:16:3e:11:22:002",
        ] {
            assert!(normalize_mac(bad).is_err(), "{bad}");
        }
    }
}
