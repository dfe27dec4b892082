//! Storage volume IDs (`local:iso/talos.iso`, `local-lvm:vm-100-disk-0`), as pve-storage
//! writes them: `<storage>:<name>`, where files of a directory-like content type live under
//! `<content>/` (pve-storage `PVE::Storage::Plugin::parse_volname`: `iso/`, `vztmpl/`,
//! `snippets/`, `import/`, `dump/` for backups). Guest images carry no content directory.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The content types whose volumes sit in a directory named after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ContentKind {
    /// ISO images (`iso/`).
    Iso,
    /// Container templates (`vztmpl/`).
    Vztmpl,
    /// Snippets: cloud-init and hook scripts (`snippets/`).
    Snippets,
    /// Disk images to import (`import/`).
    Import,
    /// Backups (`dump/`, content type `backup`).
    Backup,
}

impl ContentKind {
    /// The content type as in the API (`iso`, `vztmpl`, `snippets`, `import`, `backup`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Iso => "iso",
            ContentKind::Vztmpl => "vztmpl",
            ContentKind::Snippets => "snippets",
            ContentKind::Import => "import",
            ContentKind::Backup => "backup",
        }
    }

    /// The directory in a volume ID (`dump` for backups, else the content type).
    pub fn dir(self) -> &'static str {
        match self {
            ContentKind::Backup => "dump",
            other => other.as_str(),
        }
    }

    fn from_dir(dir: &str) -> Option<ContentKind> {
        Some(match dir {
            "iso" => ContentKind::Iso,
            "vztmpl" => ContentKind::Vztmpl,
            "snippets" => ContentKind::Snippets,
            "import" => ContentKind::Import,
            "dump" | "backup" => ContentKind::Backup,
            _ => return None,
        })
    }
}

impl fmt::Display for ContentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A volume ID: storage, content kind (for directory-like content) and name.
///
/// ```
/// use proxmox_client::{ContentKind, VolumeId};
/// let v = VolumeId::new("local", ContentKind::Snippets, "web-1.yaml");
/// assert_eq!(v.to_string(), "local:snippets/web-1.yaml");
/// let d: VolumeId = "local-lvm:vm-100-disk-0".parse()?;
/// assert_eq!((d.storage.as_str(), d.content, d.name.as_str()), ("local-lvm", None, "vm-100-disk-0"));
/// # Ok::<(), proxmox_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId {
    /// Storage ID.
    pub storage: String,
    /// The content directory, for ISO images, templates, snippets, imports and backups.
    pub content: Option<ContentKind>,
    /// The file or volume name (without the content directory).
    pub name: String,
}

impl VolumeId {
    /// `<storage>:<content>/<name>`.
    pub fn new(storage: impl Into<String>, content: ContentKind, name: impl Into<String>) -> Self {
        VolumeId {
            storage: storage.into(),
            content: Some(content),
            name: name.into(),
        }
    }

    /// `<storage>:<name>` (a guest image, e.g. `vm-100-disk-0`).
    pub fn image(storage: impl Into<String>, name: impl Into<String>) -> Self {
        VolumeId {
            storage: storage.into(),
            content: None,
            name: name.into(),
        }
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.content {
            Some(c) => write!(f, "{}:{}/{}", self.storage, c.dir(), self.name),
            None => write!(f, "{}:{}", self.storage, self.name),
        }
    }
}

impl FromStr for VolumeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (storage, rest) = s.split_once(':').ok_or_else(|| {
            Error::invalid("volume ID", format!("'{s}' has no '<storage>:' prefix"))
        })?;
        // pve-storage's storage ID format (`pve-storage-id`): a letter, then letters,
        // digits, `-`, `_`, `.`.
        let ok_storage = storage
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && storage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_storage {
            return Err(Error::invalid(
                "volume ID",
                format!("'{storage}' in '{s}' is not a storage ID"),
            ));
        }
        if rest.is_empty() {
            return Err(Error::invalid(
                "volume ID",
                format!("'{s}' has no volume name"),
            ));
        }
        let (content, name) = match rest.split_once('/') {
            Some((dir, name)) if !name.is_empty() => match ContentKind::from_dir(dir) {
                Some(c) => (Some(c), name),
                None => (None, rest),
            },
            _ => (None, rest),
        };
        Ok(VolumeId {
            storage: storage.to_string(),
            content,
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "local:iso/talos-v1.12.0.iso",
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "local:snippets/lab.web.vendor-abc.yaml",
            "local:import/debian-12-genericcloud-amd64.qcow2",
            "local:dump/vzdump-qemu-100-2025_01_01-00_00_00.vma.zst",
            "local-lvm:vm-100-disk-0",
            "local:100/vm-100-disk-0.qcow2",
            "tank:subvol-101-disk-0",
        ] {
            let v: VolumeId = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
        }
        let v: VolumeId = "local:iso/a.iso".parse().unwrap();
        assert_eq!(v, VolumeId::new("local", ContentKind::Iso, "a.iso"));
        let b: VolumeId = "nas:dump/x.vma".parse().unwrap();
        assert_eq!(b.content, Some(ContentKind::Backup));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "noprefix",
            ":iso/a",
            "local:",
            "1abc:iso/x",
            "lo cal:iso/x",
        ] {
            assert!(s.parse::<VolumeId>().is_err(), "{s}");
        }
    }
}
