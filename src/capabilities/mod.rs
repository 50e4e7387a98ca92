//! Linux capabilities: the five sets of process.capabilities.
//!
//! Names are mapped with the `caps` crate; the sets themselves are applied with one raw
//! capset(2) call (plus prctl for the bounding and ambient sets) instead of the crate's
//! per-set get+set round trips, since this runs on every container start.

use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("capabilities: unknown capability {0}")]
    Unknown(String),
    #[error("capabilities: {call}: {err}")]
    Sys { call: &'static str, err: std::io::Error },
}

/// Capability sets as 64-bit masks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Masks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

pub fn cap_index(name: &str) -> Result<u8, CapError> {
    caps::Capability::from_str(name).map(|c| c.index()).map_err(|_| CapError::Unknown(name.to_string()))
}

fn mask_of(set: &Option<Capabilities>) -> Result<u64, CapError> {
    let mut m = 0u64;
    if let Some(set) = set {
        for c in set {
            // oci-spec serializes each capability as its CAP_* name.
            let name = c.to_string();
            let name = if name.starts_with("CAP_") { name } else { format!("CAP_{}", name.to_uppercase()) };
            m |= 1u64 << cap_index(&name)?;
        }
    }
    Ok(m)
}

impl Masks {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Masks, CapError> {
        let Some(c) = c else { return Ok(Masks::default()) };
        Ok(Masks {
            bounding: mask_of(c.bounding())?,
            effective: mask_of(c.effective())?,
            permitted: mask_of(c.permitted())?,
            inheritable: mask_of(c.inheritable())?,
            ambient: mask_of(c.ambient())?,
        })
    }

    #[cfg(test)]
    pub fn from_names(names: &[String]) -> Result<u64, CapError> {
        let mut m = 0u64;
        for n in names {
            let n = if n.starts_with("CAP_") { n.clone() } else { format!("CAP_{}", n.to_uppercase()) };
            m |= 1u64 << cap_index(&n)?;
        }
        Ok(m)
    }
}

fn sys(call: &'static str, r: libc::c_int) -> Result<(), CapError> {
    if r < 0 {
        Err(CapError::Sys { call, err: std::io::Error::last_os_error() })
    } else {
        Ok(())
    }
}

/// Drop every capability not in `bounding` from the bounding set. Caps the kernel does not
/// know are skipped (PR_CAPBSET_READ fails for them).
pub fn drop_bounding(bounding: u64) -> Result<(), CapError> {
    for cap in 0..64u64 {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            break; // past the kernel's last capability
        }
        if r == 1 && bounding & (1 << cap) == 0 {
            // SAFETY: as above.
            sys("prctl(PR_CAPBSET_DROP)", unsafe {
                libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)
            })?;
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set effective, permitted and inheritable with one capset(2).
pub fn set_eip(m: &Masks) -> Result<(), CapError> {
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: m.effective as u32, permitted: m.permitted as u32, inheritable: m.inheritable as u32 },
        CapData {
            effective: (m.effective >> 32) as u32,
            permitted: (m.permitted >> 32) as u32,
            inheritable: (m.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: hdr and data are valid, correctly laid out for capset v3 (two data elements).
    sys("capset", unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) as libc::c_int })
}

/// Raise the ambient set (which needs the caps in permitted and inheritable first).
pub fn set_ambient(ambient: u64) -> Result<(), CapError> {
    // SAFETY: prctl with integer arguments only.
    sys("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    })?;
    for cap in 0..64u64 {
        if ambient & (1 << cap) != 0 {
            // SAFETY: as above. A cap missing from permitted or inheritable cannot be raised:
            // like runc, that is not an error (the config asked for the impossible).
            let r =
                unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) };
            if r < 0 {
                crate::logging::debug(&format!(
                    "ambient capability {cap} not raised: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_spec() {
        let c: LinuxCapabilities =
            serde_json::from_str(r#"{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"],"ambient":[]}"#)
                .unwrap();
        let m = Masks::from_spec(Some(&c)).unwrap();
        assert_eq!(m.bounding, (1 << 0) | (1 << 5));
        assert_eq!(m.effective, 1 << 5);
        assert_eq!(m.permitted, 0);
    }

    #[test]
    fn names() {
        assert_eq!(Masks::from_names(&["NET_ADMIN".into(), "CAP_SYS_ADMIN".into()]).unwrap(), (1 << 12) | (1 << 21));
        assert!(Masks::from_names(&["CAP_NOPE".into()]).is_err());
    }
}
