//! Dropping root: when the agent is started as root without a service
//! manager that does it (OpenWrt's procd, sysvinit), it switches to the
//! configured `agent.user` and `agent.group` before it opens anything else.
//!
//! What needs root is done first: the state directory is created and handed
//! to that user. Then supplementary groups, group and user are set, in that
//! order, and the agent checks that root cannot be regained. Under systemd
//! the unit's `User=` already did this and the agent is not root here.

use std::path::Path;

use nix::unistd::{self, Gid, Group, Uid, User};

/// Switches to `user`/`group` if running as root; a no-op otherwise.
/// Returns what was done, for the log.
pub fn drop_root(
    user: Option<&str>,
    group: Option<&str>,
    state_dir: &Path,
) -> Result<Option<String>, String> {
    if !unistd::geteuid().is_root() {
        if let Some(user) = user {
            let me = User::from_uid(unistd::geteuid()).ok().flatten();
            if me.as_ref().is_none_or(|me| me.name != user) {
                tracing::debug!(user, "agent.user is set but the agent was not started as root; running as it was started");
            }
        }
        return Ok(None);
    }
    let Some(user_name) = user else {
        tracing::warn!("running as root: set agent.user (and agent.group) so that the agent drops root after start");
        return Ok(None);
    };
    let user = User::from_name(user_name)
        .map_err(|e| format!("agent.user: cannot look up {user_name:?}: {e}"))?
        .ok_or_else(|| {
            format!(
                "agent.user: no user {user_name:?} on this system; create it or change agent.user"
            )
        })?;
    let gid = match group {
        Some(name) => {
            Group::from_name(name)
                .map_err(|e| format!("agent.group: cannot look up {name:?}: {e}"))?
                .ok_or_else(|| format!("agent.group: no group {name:?} on this system; create it or change agent.group"))?
                .gid
        }
        None => user.gid,
    };
    hand_over(state_dir, user.uid, gid)?;
    switch(user.uid, gid)?;
    Ok(Some(format!("{}:{}", user.name, gid)))
}

/// Creates the state directory (0700) and gives it, and what is in it, to the user.
fn hand_over(state_dir: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    let fail = |e: &dyn std::fmt::Display| {
        format!(
            "cannot prepare storage.state_dir {} for the agent's user: {e}",
            state_dir.display()
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| fail(&e))?;
    let mut pending = vec![state_dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
            .map_err(|e| fail(&e))?;
        if path.is_dir() && !path.is_symlink() {
            for entry in std::fs::read_dir(&path).map_err(|e| fail(&e))? {
                pending.push(entry.map_err(|e| fail(&e))?.path());
            }
        }
    }
    Ok(())
}

fn switch(uid: Uid, gid: Gid) -> Result<(), String> {
    unistd::setgroups(&[gid]).map_err(|e| format!("cannot drop the supplementary groups: {e}"))?;
    unistd::setgid(gid).map_err(|e| format!("cannot switch to group {gid}: {e}"))?;
    unistd::setuid(uid).map_err(|e| format!("cannot switch to user {uid}: {e}"))?;
    if unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("root could be regained after dropping it; refusing to run".into());
    }
    Ok(())
}
