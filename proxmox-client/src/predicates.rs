//! What an [`Error`] means, as predicates, so callers never match PVE's message text.
//!
//! PVE reports most conditions as HTTP 500 with a `die` message (or a task's exit status),
//! so the knowledge of those texts lives here, once, with the source each comes from:
//!
//! | predicate | PVE text | source |
//! |---|---|---|
//! | `is_not_running` | `VM 100 not running`, `CT 101 not running` | qemu-server `API2/Qemu.pm` (`vm_stop`, `vm_shutdown`, `vm_reboot`); pve-container `API2/LXC/Status.pm` |
//! | `is_already_running` | `VM 100 already running`, `CT 101 already running` | qemu-server `QemuServer.pm` (`vm_start_nolock`); pve-container `API2/LXC/Status.pm` (`vm_start`) |
//! | `is_digest_mismatch` | `checksum mismatch (file change by other user?)` (QEMU), `detected modified configuration - file changed by other user? Try again.` (everything using `PVE::Tools::assert_if_modified`: LXC, mappings, jobs) | qemu-server `API2/Qemu.pm` (`update_vm_api`, `resize_vm`); pve-common `Tools.pm` (`assert_if_modified`) |
//! | `is_locked` | `VM is locked (clone)`, `CT is locked (backup)`, `can't lock file '...' - got timeout` | pve-guest-common `AbstractConfig::check_lock`; pve-common `Tools::lock_file_full` |
//! | `is_not_found` | `Configuration file 'nodes/pve/qemu-server/100.conf' does not exist`, `No such job 'x'` (a parameter error), HTTP 404/501 | pve-guest-common `AbstractConfig::load_config`; pve-manager `API2/Backup.pm` |
//! | `is_already_exists` | `VM 100 already exists on node 'pve'` | qemu-server / pve-container `create_vm` |
//! | `is_root_only` | `Permission check failed (... only allowed for root@pam)` (403) | pve-container `LXC.pm` (`check_ct_modify_config_perm`: feature flags) |

use crate::error::Error;

impl Error {
    /// The server's message and every per-parameter message, or a failed task's text.
    fn texts(&self) -> impl Iterator<Item = &str> {
        let (main, errors) = match self {
            Error::Validation {
                message, errors, ..
            }
            | Error::Api {
                message, errors, ..
            } => (Some(message.as_str()), Some(errors)),
            Error::TaskFailed { exitstatus, .. } => (Some(exitstatus.as_str()), None),
            other => (other.server_message(), None),
        };
        main.into_iter().chain(
            errors
                .into_iter()
                .flat_map(|e| e.values().map(String::as_str)),
        )
    }

    /// The guest, volume, job or path does not exist (also a `No such job` parameter error).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
            || self.texts().any(|t| {
                let l = t.to_ascii_lowercase();
                l.starts_with("no such ") || l.contains("does not exist")
            })
    }

    /// The backup job `id` itself is gone (`No such job 'id'` from `PUT`/`DELETE
    /// /cluster/backup/{id}`, `no such vzdump job` from its `GET`, or a not-found error
    /// naming `'id'`), as opposed to a storage or pool the job names being missing.
    pub fn is_backup_job_missing(&self, id: &str) -> bool {
        let quoted = format!("'{id}'");
        self.texts().any(|t| {
            t.starts_with("No such job")
                || t.starts_with("no such vzdump job")
                || (t.contains(&quoted) && t.contains("does not exist"))
        }) || (matches!(self, Error::NotFound { .. }) && self.texts().any(|t| t.contains(&quoted)))
    }

    /// The object to create exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. })
            || self
                .texts()
                .any(|t| t.to_ascii_lowercase().contains("already exists"))
    }

    /// The guest is locked (a `lock` property, or a lock file that timed out).
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
            || self.texts().any(|t| {
                t.starts_with("VM is locked (")
                    || t.starts_with("CT is locked (")
                    || t.contains("got timeout")
                    || t.contains("got lock request timeout")
            })
    }

    /// The change was computed from a configuration that has changed since (the `digest`
    /// no longer matches): read again and recompute.
    pub fn is_digest_mismatch(&self) -> bool {
        self.texts().any(|t| {
            t.starts_with("checksum mismatch (file change by other user?)")
                || t.contains("detected modified configuration - file changed by other user?")
        })
    }

    /// The guest is not running (stop, shutdown, reboot, agent calls on a stopped guest).
    pub fn is_not_running(&self) -> bool {
        self.texts().any(|t| {
            let t = t.trim_end();
            ((t.starts_with("VM ") || t.starts_with("CT ")) && t.ends_with(" not running"))
                || t == "QEMU guest agent is not running"
        })
    }

    /// The guest is running already (start).
    pub fn is_already_running(&self) -> bool {
        self.texts().any(|t| {
            let t = t.trim_end();
            (t.starts_with("VM ") || t.starts_with("CT ")) && t.ends_with(" already running")
        })
    }

    /// Refused because only `root@pam` may make this change (container feature flags
    /// other than `nesting`, device passthrough, ...).
    pub fn is_root_only(&self) -> bool {
        matches!(self, Error::Permission { .. })
            && self
                .texts()
                .any(|t| t.contains("only allowed for root@pam"))
    }

    /// A permission (403) error.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Permission { .. })
    }

    /// An authentication (401) error: bad token or ticket.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }

    /// The server's certificate is not trusted (pin its fingerprint).
    pub fn is_untrusted_certificate(&self) -> bool {
        matches!(self, Error::UntrustedCertificate { .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn e(status: u16, msg: &str) -> Error {
        Error::from_response(status, msg, b"")
    }

    #[test]
    fn predicates_on_real_pve_texts() {
        assert!(e(500, "VM 100 not running").is_not_running());
        assert!(e(500, "CT 101 not running").is_not_running());
        assert!(!e(500, "VM 100 not running").is_already_running());
        assert!(e(500, "CT 101 already running").is_already_running());
        assert!(e(500, "checksum mismatch (file change by other user?)").is_digest_mismatch());
        assert!(
            e(
                500,
                "detected modified configuration - file changed by other user? Try again."
            )
            .is_digest_mismatch()
        );
        assert!(e(500, "VM is locked (clone)").is_locked());
        assert!(e(500, "can't lock file '/var/lock/x' - got timeout").is_locked());
        assert!(
            e(
                500,
                "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist"
            )
            .is_not_found()
        );
        assert!(e(500, "VM 100 already exists on node 'pve'").is_already_exists());
        assert!(
            e(
                403,
                "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
            )
            .is_root_only()
        );
        assert!(!e(403, "Permission check failed (/vms/100, VM.Allocate)").is_root_only());
        assert!(e(401, "authentication failure").is_auth());
        let task = Error::TaskFailed {
            upid: "x".into(),
            exitstatus: "VM 100 already running".into(),
        };
        assert!(task.is_already_running());
        for other in [
            e(500, "QEMU guest agent is not running"),
            e(500, "got no worker upid - start worker failed"),
        ] {
            assert!(!other.is_digest_mismatch() && !other.is_locked() && !other.is_not_found());
        }
    }

    #[test]
    fn backup_job_missing_is_about_the_job_itself() {
        let body = br#"{"data":null,"message":"Parameter verification failed.\n","errors":{"id":"No such job 'homelab-x'"}}"#;
        let v = Error::from_response(400, "Parameter verification failed.", body);
        assert!(v.is_backup_job_missing("homelab-x"));
        assert!(v.is_not_found());
        assert!(e(500, "no such vzdump job").is_backup_job_missing("homelab-x"));
        assert!(e(500, "job 'homelab-x' does not exist").is_backup_job_missing("homelab-x"));
        assert!(!e(500, "storage 'nas' does not exist").is_backup_job_missing("homelab-x"));
    }
}
