//! Least privilege for the live sensor: once the capture handles are open, switch to an
//! unprivileged user and give up every capability, before any other thread exists
//! (capabilities are per thread; threads started later inherit the empty sets).

use crate::config::DaemonConfig;
use anyhow::{bail, Context, Result};
use caps::CapSet;
use nix::unistd::{Gid, Group, Uid, User};

/// Who the process runs as after [`drop_privileges`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Real and effective user id.
    pub uid: u32,
    /// Real and effective group id.
    pub gid: u32,
    /// Effective capabilities left (empty unless running as root was allowed).
    pub capabilities: Vec<String>,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let caps = if self.capabilities.is_empty() {
            "none".to_string()
        } else {
            self.capabilities.join(",")
        };
        write!(f, "uid={} gid={} capabilities={caps}", self.uid, self.gid)
    }
}

/// Switches to `daemon.user`/`daemon.group` when running as root, then drops every
/// capability and sets no-new-privileges. Refuses to keep running as root unless
/// `daemon.allow_root` is set. Must run before any thread is started.
pub fn drop_privileges(d: &DaemonConfig) -> Result<Identity> {
    let euid = Uid::effective();
    let mut keep_root = false;
    match (&d.user, euid.is_root()) {
        (Some(name), true) => switch_user(name, d.group.as_deref())?,
        (Some(name), false) => {
            let user = lookup_user(name)?;
            if user.uid != euid {
                bail!(
                    "cannot switch to user {name:?}: not running as root (uid {euid}); start as root or as that user"
                );
            }
        }
        (None, true) if d.allow_root => {
            tracing::warn!("running as root (daemon.allow_root = true); set daemon.user to drop privileges");
            keep_root = true;
        }
        (None, true) => bail!(
            "refusing to keep running as root after opening the capture: set daemon.user (or --user NAME), or daemon.allow_root = true"
        ),
        (None, false) => {}
    }
    if !keep_root {
        for set in [
            CapSet::Ambient,
            CapSet::Inheritable,
            CapSet::Effective,
            CapSet::Permitted,
        ] {
            caps::clear(None, set).with_context(|| format!("cannot clear {set:?} capabilities"))?;
        }
        nix::sys::prctl::set_no_new_privs().context("cannot set no-new-privileges")?;
    }
    let effective = caps::read(None, CapSet::Effective).context("cannot read capabilities")?;
    let mut capabilities: Vec<String> = effective.iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    if !keep_root && !capabilities.is_empty() {
        bail!("capabilities left after dropping them: {capabilities:?}");
    }
    Ok(Identity {
        uid: Uid::current().as_raw(),
        gid: Gid::current().as_raw(),
        capabilities,
    })
}

fn lookup_user(name: &str) -> Result<User> {
    User::from_name(name)
        .with_context(|| format!("cannot look up user {name:?}"))?
        .with_context(|| format!("no such user {name:?} (daemon.user)"))
}

/// Root only: supplementary groups, then group, then user (in that order: after the user
/// changes, the others can no longer be changed).
fn switch_user(name: &str, group: Option<&str>) -> Result<()> {
    let user = lookup_user(name)?;
    if user.uid.is_root() {
        bail!("daemon.user {name:?} is root; name an unprivileged user");
    }
    let gid = match group {
        None => user.gid,
        Some(g) => {
            Group::from_name(g)
                .with_context(|| format!("cannot look up group {g:?}"))?
                .with_context(|| format!("no such group {g:?} (daemon.group)"))?
                .gid
        }
    };
    nix::unistd::setgroups(&[gid]).context("cannot set supplementary groups")?;
    nix::unistd::setresgid(gid, gid, gid).with_context(|| format!("cannot switch to gid {gid}"))?;
    nix::unistd::setresuid(user.uid, user.uid, user.uid)
        .with_context(|| format!("cannot switch to user {name:?}"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("could switch back to root after dropping privileges");
    }
    Ok(())
}
