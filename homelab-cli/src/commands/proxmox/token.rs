//! The token-role planner behind `proxmox token create`: what the token should look like
//! ([`TokenSpec`]), what the server holds ([`Observed`]), and the pure [`plan`] to [`Step`]s.

use super::*;

/// What the token should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// `user@realm`.
    pub user: String,
    /// Role name.
    pub role: String,
    /// Token name.
    pub token_id: String,
    /// ACL path.
    pub path: String,
    /// Privilege separation.
    pub privsep: bool,
    /// The role's privileges.
    pub privileges: BTreeSet<String>,
    /// Storages granted [`STORAGE_ROLE`] (backup job targets).
    pub backup_storages: Vec<String>,
}

impl TokenSpec {
    /// `user@realm!tokenid`.
    pub fn full_token_id(&self) -> String {
        format!("{}!{}", self.user, self.token_id)
    }

    /// Check names against PVE's formats before sending anything.
    pub fn validate(&self) -> Result<(), String> {
        let (name, realm) = self
            .user
            .rsplit_once('@')
            .ok_or_else(|| format!("--user '{}': expected user@realm", self.user))?;
        if name.is_empty() || realm.is_empty() || name.contains(['!', ':', '/']) {
            return Err(format!("--user '{}': expected user@realm", self.user));
        }
        let id_ok = self
            .token_id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && self.token_id.len() >= 2
            && self
                .token_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !id_ok {
            return Err(format!(
                "--token-id '{}': must match [A-Za-z][A-Za-z0-9.\\-_]+",
                self.token_id
            ));
        }
        let role_ok = !self.role.is_empty()
            && self
                .role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !role_ok {
            return Err(format!(
                "--role '{}': use letters, digits, '.', '-', '_'",
                self.role
            ));
        }
        if !self.path.starts_with('/') {
            return Err(format!("--path '{}': ACL paths start with '/'", self.path));
        }
        for s in &self.backup_storages {
            // pve-storage-id (pve-storage PVE/Storage.pm / JSONSchema).
            let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(format!(
                    "--backup-storage '{s}': storage IDs match [a-z][a-z0-9\\-_.]*[a-z0-9]"
                ));
            }
        }
        Ok(())
    }
}

/// What the server (and the output file) already hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The user exists.
    pub user: bool,
    /// The role's privileges, when the role exists.
    pub role: Option<BTreeSet<String>>,
    /// Whether the role is built in (cannot be changed).
    pub role_builtin: bool,
    /// The user has the role on the path.
    pub user_acl: bool,
    /// The token exists; its `privsep`.
    pub token: Option<bool>,
    /// The token has the role on the path.
    pub token_acl: bool,
    /// Storages on which the user has [`STORAGE_ROLE`].
    pub user_storage_acls: BTreeSet<String>,
    /// Storages on which the token has [`STORAGE_ROLE`].
    pub token_storage_acls: BTreeSet<String>,
    /// What the output file knows about the token.
    pub stored: Stored,
}

/// The token as recorded in the output file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stored {
    /// The file does not hold this token.
    #[default]
    Missing,
    /// The file holds this token and its secret authenticates.
    Valid,
    /// The file holds this token id but the secret is rejected.
    Rejected,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `POST /access/users`.
    CreateUser,
    /// `POST /access/roles`.
    CreateRole,
    /// `PUT /access/roles/{role}` with the full list.
    SetRolePrivileges {
        /// Privileges added.
        add: Vec<String>,
        /// Privileges removed.
        remove: Vec<String>,
    },
    /// `PUT /access/acl` for the user.
    GrantUser,
    /// `DELETE /access/users/{user}/token/{id}` (rotation).
    DeleteToken,
    /// `PUT /access/users/{user}/token/{id}` to change `privsep`.
    SetPrivsep,
    /// `POST /access/users/{user}/token/{id}`; the secret is written to the file.
    CreateToken,
    /// `PUT /access/acl` for the token.
    GrantToken,
    /// `PUT /access/acl`: [`STORAGE_ROLE`] on `/storage/<storage>` for the user.
    GrantUserStorage {
        /// The storage.
        storage: String,
    },
    /// `PUT /access/acl`: [`STORAGE_ROLE`] on `/storage/<storage>` for the token.
    GrantTokenStorage {
        /// The storage.
        storage: String,
    },
}

/// Plan the steps from `observed` to `spec`. Errors when the token exists but its secret
/// is unknown here and `rotate` is off (PVE shows a secret only once).
pub fn plan(
    spec: &TokenSpec,
    observed: &Observed,
    rotate: bool,
    output: &Path,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    if !observed.user {
        steps.push(Step::CreateUser);
    }
    match &observed.role {
        None => steps.push(Step::CreateRole),
        Some(have) if *have != spec.privileges => {
            if observed.role_builtin {
                return Err(format!(
                    "role '{}' is a built-in role with other privileges; choose another --role",
                    spec.role
                ));
            }
            steps.push(Step::SetRolePrivileges {
                add: spec.privileges.difference(have).cloned().collect(),
                remove: have.difference(&spec.privileges).cloned().collect(),
            });
        }
        Some(_) => {}
    }
    if !observed.user_acl {
        steps.push(Step::GrantUser);
    }
    for storage in &spec.backup_storages {
        if !observed.user_storage_acls.contains(storage) {
            steps.push(Step::GrantUserStorage {
                storage: storage.clone(),
            });
        }
    }
    let full = spec.full_token_id();
    let mut fresh = false;
    match (observed.token, observed.stored) {
        (None, _) => {
            steps.push(Step::CreateToken);
            fresh = true;
        }
        (Some(_), Stored::Missing | Stored::Rejected) if rotate => {
            steps.push(Step::DeleteToken);
            steps.push(Step::CreateToken);
            fresh = true;
        }
        (Some(_), Stored::Missing) => {
            return Err(format!(
                "token {full} exists but its secret is not in {} (Proxmox shows a secret only once); \
                 rerun with --rotate to replace the token",
                output.display()
            ));
        }
        (Some(_), Stored::Rejected) => {
            return Err(format!(
                "the secret of {full} in {} is rejected by the server; rerun with --rotate to replace the token",
                output.display()
            ));
        }
        (Some(privsep), Stored::Valid) => {
            if privsep != spec.privsep {
                steps.push(Step::SetPrivsep);
            }
        }
    }
    // Deleting a token drops its ACL entries too.
    if spec.privsep && (fresh || !observed.token_acl) {
        steps.push(Step::GrantToken);
    }
    if spec.privsep {
        for storage in &spec.backup_storages {
            if fresh || !observed.token_storage_acls.contains(storage) {
                steps.push(Step::GrantTokenStorage {
                    storage: storage.clone(),
                });
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> TokenSpec {
        TokenSpec {
            user: "homelab@pve".into(),
            role: "HomelabProvisioner".into(),
            token_id: "homelab".into(),
            path: "/".into(),
            privsep: true,
            privileges: privileges().into_iter().map(String::from).collect(),
            backup_storages: vec!["local".into()],
        }
    }

    fn done() -> Observed {
        Observed {
            user: true,
            role: Some(spec().privileges),
            role_builtin: false,
            user_acl: true,
            token: Some(true),
            token_acl: true,
            user_storage_acls: BTreeSet::from(["local".to_string()]),
            token_storage_acls: BTreeSet::from(["local".to_string()]),
            stored: Stored::Valid,
        }
    }

    #[test]
    fn fresh_server_gets_everything() {
        let steps = plan(&spec(), &Observed::default(), false, Path::new("s.yaml")).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::CreateUser,
                Step::CreateRole,
                Step::GrantUser,
                Step::GrantUserStorage {
                    storage: "local".into()
                },
                Step::CreateToken,
                Step::GrantToken,
                Step::GrantTokenStorage {
                    storage: "local".into()
                },
            ]
        );
        let mut no_sep = spec();
        no_sep.privsep = false;
        let steps = plan(&no_sep, &Observed::default(), false, Path::new("s.yaml")).unwrap();
        assert!(!steps.contains(&Step::GrantToken));
    }

    #[test]
    fn converged_is_a_no_op() {
        assert!(
            plan(&spec(), &done(), false, Path::new("s.yaml"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn role_drift_is_repaired() {
        let mut o = done();
        let mut have = spec().privileges;
        have.remove("VM.Audit");
        have.insert("Sys.Console".into());
        o.role = Some(have);
        assert_eq!(
            plan(&spec(), &o, false, Path::new("s.yaml")).unwrap(),
            vec![Step::SetRolePrivileges {
                add: vec!["VM.Audit".into()],
                remove: vec!["Sys.Console".into()],
            }]
        );
        o.role_builtin = true;
        assert!(plan(&spec(), &o, false, Path::new("s.yaml")).is_err());
    }

    #[test]
    fn unknown_secret_needs_rotate() {
        let mut o = done();
        o.stored = Stored::Missing;
        let e = plan(&spec(), &o, false, Path::new("out.enc.yaml")).unwrap_err();
        assert!(e.contains("--rotate") && e.contains("out.enc.yaml"), "{e}");
        o.stored = Stored::Rejected;
        assert!(
            plan(&spec(), &o, false, Path::new("s"))
                .unwrap_err()
                .contains("rejected")
        );
        assert_eq!(
            plan(&spec(), &o, true, Path::new("s")).unwrap(),
            vec![
                Step::DeleteToken,
                Step::CreateToken,
                Step::GrantToken,
                Step::GrantTokenStorage {
                    storage: "local".into()
                }
            ]
        );
    }

    #[test]
    fn missing_acls_and_privsep_change() {
        let mut o = done();
        o.user_acl = false;
        o.token_acl = false;
        o.token = Some(false);
        o.token_storage_acls.clear();
        assert_eq!(
            plan(&spec(), &o, false, Path::new("s")).unwrap(),
            vec![
                Step::GrantUser,
                Step::SetPrivsep,
                Step::GrantToken,
                Step::GrantTokenStorage {
                    storage: "local".into()
                }
            ]
        );
    }

    #[test]
    fn names_are_validated() {
        assert!(spec().validate().is_ok());
        for (user, token, role, path) in [
            ("homelab", "homelab", "R", "/"),
            ("homelab@pve", "1abc", "R", "/"),
            ("homelab@pve", "a", "R", "/"),
            ("homelab@pve", "ok", "bad role", "/"),
            ("homelab@pve", "ok", "R", "vms"),
        ] {
            let s = TokenSpec {
                user: user.into(),
                token_id: token.into(),
                role: role.into(),
                path: path.into(),
                ..spec()
            };
            assert!(s.validate().is_err(), "{user} {token} {role} {path}");
        }
    }
}
