//! Who is at the other end of an accepted connection, from the kernel: `SO_PEERCRED` of the
//! accepted socket (the uid, gid and pid of the process that connected, as typed numbers —
//! snapd's CVE-2019-7304 came of parsing them out of a string a client could shape), then the
//! user's name from passwd and its groups from the group database.
//!
//! Must not: take anything the client sends into account, or guess: a socket whose
//! credentials cannot be read is an error, never a default caller.

use std::ffi::CString;
use std::io;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use super::Caller;

impl Caller {
    /// The caller on `stream` (an accepted connection).
    pub fn of(stream: &UnixStream) -> io::Result<Caller> {
        let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
        Ok(Caller::from_ids(cred.uid(), cred.gid(), cred.pid()))
    }

    /// The caller with these kernel-given ids: names from passwd and the group database.
    pub fn from_ids(uid: u32, gid: u32, pid: i32) -> Caller {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let name = user
            .as_ref()
            .map_or_else(|| uid.to_string(), |u| u.name.clone());
        // Membership as the group database has it for the passwd user (its primary group
        // included), not the connecting process's own gid list, which a setgid program
        // changes.
        let gids = user
            .as_ref()
            .and_then(|u| {
                let cname = CString::new(u.name.as_str()).ok()?;
                getgrouplist(&cname, u.gid).ok()
            })
            .unwrap_or_default();
        let mut groups: Vec<String> = Vec::new();
        for g in gids {
            if let Ok(Some(group)) = Group::from_gid(Gid::from_raw(g.as_raw())) {
                if !groups.contains(&group.name) {
                    groups.push(group.name);
                }
            }
        }
        Caller {
            uid,
            gid,
            pid,
            user: name,
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_of_a_socketpair_is_us() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let caller = Caller::of(&a).expect("peer credentials");
        assert_eq!(caller.uid, crate::proc::my_uid());
        assert_eq!(caller.gid, nix::unistd::getegid().as_raw());
        assert_eq!(caller.pid, std::process::id() as i32);
        let me = User::from_uid(Uid::from_raw(caller.uid))
            .ok()
            .flatten()
            .expect("our passwd entry");
        assert_eq!(caller.user, me.name);
        let primary = Group::from_gid(me.gid)
            .ok()
            .flatten()
            .expect("our primary group");
        assert!(
            caller.groups.contains(&primary.name),
            "{:?} lacks {}",
            caller.groups,
            primary.name
        );
    }

    #[test]
    fn a_uid_without_passwd_entry_is_named_by_its_number_in_no_group() {
        // Far above any allocated uid.
        let caller = Caller::from_ids(3_999_999_917, 3_999_999_917, 1);
        assert_eq!(caller.user, "3999999917");
        assert!(caller.groups.is_empty());
    }
}
