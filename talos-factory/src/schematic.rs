//! The schematic document (`pkg/schematic/schematic.go` in siderolabs/image-factory), its
//! canonical YAML and its ID.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::yaml::{self, Node};

/// A schematic: what the Image Factory bakes into an image.
///
/// Fields mirror the factory's Go struct, with Go's zero values standing for "absent"
/// (an empty string or list is never emitted), so that parse → emit is exactly the
/// factory's normalisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schematic {
    /// Enterprise-only owner; community factories reject a non-empty owner.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub owner: String,
    /// An SBC/board overlay.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Overlay::is_empty"
    )]
    pub overlay: Overlay,
    /// Customisations of the image (always emitted, as `{}` when empty).
    #[serde(default, deserialize_with = "nullable")]
    pub customization: Customization,
}

/// The `overlay` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Overlay {
    /// Overlay image, e.g. `siderolabs/sbc-raspberrypi`.
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    /// Overlay name, e.g. `rpi_generic`.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Free-form overlay options (keys are sorted on output).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, serde_yaml_ng::Value>,
}

impl Overlay {
    /// Whether every field is empty (the overlay is then omitted).
    pub fn is_empty(&self) -> bool {
        self.image.is_empty() && self.name.is_empty() && self.options.is_empty()
    }
}

/// The `customization` section. Field order is the factory's emission order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Customization {
    /// A machine configuration embedded in the image.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub embedded_machine_configuration: String,
    /// Extra kernel command-line arguments.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extra_kernel_args: Vec<String>,
    /// META partition values.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub meta: Vec<MetaValue>,
    /// System extensions.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "SystemExtensions::is_empty"
    )]
    pub system_extensions: SystemExtensions,
    /// Boot loader choice (`none` = automatic).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Bootloader::is_auto"
    )]
    pub bootloader: Bootloader,
    /// Secure boot settings.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "SecureBoot::is_empty"
    )]
    pub secureboot: SecureBoot,
    /// Disk image settings.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "DiskImage::is_empty"
    )]
    pub disk_image: DiskImage,
}

impl Customization {
    /// Whether nothing is customised.
    pub fn is_empty(&self) -> bool {
        *self == Customization::default()
    }
}

/// One META value: `key` is a byte (written in decimal), `value` a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaValue {
    /// META key (0..=255; `0xa` in input is 10).
    #[serde(default, deserialize_with = "nullable")]
    pub key: u8,
    /// The value.
    #[serde(default, deserialize_with = "nullable")]
    pub value: String,
}

/// `systemExtensions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemExtensions {
    /// Official extension names, e.g. `siderolabs/qemu-guest-agent`. Order matters for the ID.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub official_extensions: Vec<String>,
}

impl SystemExtensions {
    /// Whether no extension is listed.
    pub fn is_empty(&self) -> bool {
        self.official_extensions.is_empty()
    }
}

/// `secureboot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecureBoot {
    /// Keys to enroll.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub enroll_keys: String,
    /// Include the well-known (Microsoft) UEFI certificates.
    #[serde(
        default,
        deserialize_with = "go_bool",
        skip_serializing_if = "is_false"
    )]
    pub include_well_known_certificates: bool,
}

impl SecureBoot {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.enroll_keys.is_empty() && !self.include_well_known_certificates
    }
}

/// `diskImage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskImage {
    /// Logical sector size of the disk image (0 = default).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub sector_size: u64,
}

impl DiskImage {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.sector_size == 0
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The boot loader (`imageropts.BootloaderKind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Bootloader {
    /// Automatic (the zero value; never emitted).
    #[default]
    None,
    /// GRUB for BIOS plus systemd-boot for UEFI.
    DualBoot,
    /// systemd-boot.
    SdBoot,
    /// GRUB.
    Grub,
}

impl Bootloader {
    /// Whether this is the automatic choice.
    pub fn is_auto(&self) -> bool {
        *self == Bootloader::None
    }

    /// The factory's text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Bootloader::None => "none",
            Bootloader::DualBoot => "dual-boot",
            Bootloader::SdBoot => "sd-boot",
            Bootloader::Grub => "grub",
        }
    }
}

impl FromStr for Bootloader {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Bootloader::None),
            "dual-boot" => Ok(Bootloader::DualBoot),
            "sd-boot" => Ok(Bootloader::SdBoot),
            "grub" => Ok(Bootloader::Grub),
            other => Err(Error::Invalid {
                what: "bootloader",
                value: other.to_owned(),
                expected: "one of none, dual-boot, sd-boot, grub",
            }),
        }
    }
}

/// Go's yaml decoder leaves a field at its zero value when the YAML says `null`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A boolean as Go's yaml.v3 decodes into a `bool` field: YAML booleans plus the YAML 1.1
/// words (`yes`/`no`/`on`/`off`/`y`/`n`), and null as false.
fn go_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(false),
        Some(Raw::Bool(b)) => Ok(b),
        Some(Raw::Text(t)) => match t.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(true),
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "invalid boolean {other:?}: expected true or false"
            ))),
        },
    }
}

/// A schematic ID: the lowercase hex SHA-256 of the canonical YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchematicId([u8; 32]);

impl SchematicId {
    /// The ID of exactly these canonical YAML bytes.
    pub fn of_canonical_yaml(yaml: &str) -> SchematicId {
        SchematicId(Sha256::digest(yaml.as_bytes()).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ID of the vanilla (empty) schematic.
    pub fn vanilla() -> SchematicId {
        SchematicId::of_canonical_yaml("customization: {}\n")
    }
}

impl fmt::Display for SchematicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for SchematicId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Invalid {
            what: "schematic ID",
            value: s.to_owned(),
            expected: "64 lowercase hexadecimal characters",
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| invalid())?;
        Ok(SchematicId(out))
    }
}

impl Serialize for SchematicId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchematicId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an offline ID cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uncertainty {
    /// Dotted path of the field, e.g. `customization.extraKernelArgs.[1]`.
    pub field: String,
    /// The offending value.
    pub value: String,
    /// Why.
    pub reason: &'static str,
}

impl fmt::Display for Uncertainty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.field, self.value, self.reason)
    }
}

/// The outcome of hashing a schematic offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OfflineId {
    /// The ID the factory computes for this schematic.
    Exact {
        /// The ID.
        id: SchematicId,
    },
    /// Some value is written differently by the YAML libraries the factory has used, so the
    /// ID can only be learnt by POSTing the schematic. No ID is guessed.
    NeedsFactory {
        /// What makes the offline ID unreliable.
        reasons: Vec<Uncertainty>,
    },
}

impl OfflineId {
    /// The ID when it is exact.
    pub fn exact(&self) -> Option<SchematicId> {
        match self {
            OfflineId::Exact { id } => Some(*id),
            OfflineId::NeedsFactory { .. } => None,
        }
    }
}

/// The canonical form of a schematic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// The YAML the factory stores and hashes (yaml/v4 quoting where v3 and v4 differ).
    pub yaml: String,
    /// SHA-256 of [`Canonical::yaml`]. Equal to the factory's ID only when
    /// [`Canonical::uncertain`] is empty.
    pub digest: SchematicId,
    /// Values that Go's YAML libraries may write differently.
    pub uncertain: Vec<Uncertainty>,
}

impl Canonical {
    /// The offline ID, or the reasons it cannot be trusted.
    pub fn offline_id(&self) -> OfflineId {
        if self.uncertain.is_empty() {
            OfflineId::Exact { id: self.digest }
        } else {
            OfflineId::NeedsFactory {
                reasons: self.uncertain.clone(),
            }
        }
    }
}

impl Schematic {
    /// Parse a schematic as the factory does: YAML (or JSON) with unknown fields rejected.
    /// An empty document is the vanilla schematic.
    ///
    /// Unlike Go, a number or boolean where a string is expected is an error here (write
    /// it quoted): Go keeps the source text, which cannot be recovered after parsing.
    ///
    /// ```
    /// let s = talos_factory::Schematic::parse(
    ///     "customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/qemu-guest-agent]\n",
    /// )?;
    /// assert_eq!(
    ///     s.offline_id().exact().map(|id| id.to_string()).as_deref(),
    ///     Some("ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515")
    /// );
    /// # Ok::<(), talos_factory::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Schematic, Error> {
        let parsed: Option<Schematic> =
            serde_yaml_ng::from_str(text).map_err(|e| Error::parse(&e))?;
        let parsed = parsed.unwrap_or_default();
        if parsed.overlay.options.values().any(has_tag) {
            return Err(Error::Parse {
                line: None,
                column: None,
                message: "overlay.options: explicit YAML tags (`!tag value`) are not supported"
                    .to_owned(),
            });
        }
        Ok(parsed)
    }

    /// A schematic with these official extensions, sorted and de-duplicated like the
    /// factory's web UI does.
    pub fn with_extensions<I, S>(extensions: I) -> Schematic
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut s = Schematic::default();
        s.customization.system_extensions.official_extensions =
            extensions.into_iter().map(Into::into).collect();
        s.normalize_extensions();
        s
    }

    /// Sort and de-duplicate the extension list (the web UI's behaviour; the API keeps the
    /// given order, which changes the ID).
    pub fn normalize_extensions(&mut self) {
        let list = &mut self.customization.system_extensions.official_extensions;
        list.sort();
        list.dedup();
    }

    /// The canonical YAML, its digest and any reason the digest may differ from the factory's.
    pub fn canonicalize(&self) -> Canonical {
        let (yaml, uncertain) = yaml::emit(&self.to_node());
        let digest = SchematicId::of_canonical_yaml(&yaml);
        Canonical {
            yaml,
            digest,
            uncertain,
        }
    }

    /// The canonical YAML (what the factory stores and serves at `GET /schematics/{id}`).
    pub fn canonical_yaml(&self) -> String {
        self.canonicalize().yaml
    }

    /// The schematic ID computed offline, or why it cannot be trusted.
    pub fn offline_id(&self) -> OfflineId {
        self.canonicalize().offline_id()
    }

    fn to_node(&self) -> Node {
        let mut root = Vec::new();
        if !self.owner.is_empty() {
            root.push(("owner".to_owned(), Node::Str(self.owner.clone())));
        }
        if !self.overlay.is_empty() {
            let mut o = vec![
                ("image".to_owned(), Node::Str(self.overlay.image.clone())),
                ("name".to_owned(), Node::Str(self.overlay.name.clone())),
            ];
            if !self.overlay.options.is_empty() {
                let map = serde_yaml_ng::Mapping::from_iter(
                    self.overlay
                        .options
                        .iter()
                        .map(|(k, v)| (serde_yaml_ng::Value::String(k.clone()), v.clone())),
                );
                o.push(("options".to_owned(), value_map_node(&map)));
            }
            root.push(("overlay".to_owned(), Node::Map(o)));
        }
        let c = &self.customization;
        let mut cust = Vec::new();
        let strs = |v: &[String]| Node::Seq(v.iter().cloned().map(Node::Str).collect());
        if !c.embedded_machine_configuration.is_empty() {
            cust.push((
                "embeddedMachineConfiguration".to_owned(),
                Node::Str(c.embedded_machine_configuration.clone()),
            ));
        }
        if !c.extra_kernel_args.is_empty() {
            cust.push(("extraKernelArgs".to_owned(), strs(&c.extra_kernel_args)));
        }
        if !c.meta.is_empty() {
            let items = c
                .meta
                .iter()
                .map(|m| {
                    Node::Map(vec![
                        ("key".to_owned(), Node::Int(m.key.to_string())),
                        ("value".to_owned(), Node::Str(m.value.clone())),
                    ])
                })
                .collect();
            cust.push(("meta".to_owned(), Node::Seq(items)));
        }
        if !c.system_extensions.is_empty() {
            cust.push((
                "systemExtensions".to_owned(),
                Node::Map(vec![(
                    "officialExtensions".to_owned(),
                    strs(&c.system_extensions.official_extensions),
                )]),
            ));
        }
        if !c.bootloader.is_auto() {
            cust.push((
                "bootloader".to_owned(),
                Node::Str(c.bootloader.as_str().to_owned()),
            ));
        }
        if !c.secureboot.is_empty() {
            let mut sb = Vec::new();
            if !c.secureboot.enroll_keys.is_empty() {
                sb.push((
                    "enrollKeys".to_owned(),
                    Node::Str(c.secureboot.enroll_keys.clone()),
                ));
            }
            if c.secureboot.include_well_known_certificates {
                sb.push(("includeWellKnownCertificates".to_owned(), Node::Bool(true)));
            }
            cust.push(("secureboot".to_owned(), Node::Map(sb)));
        }
        if !c.disk_image.is_empty() {
            cust.push((
                "diskImage".to_owned(),
                Node::Map(vec![(
                    "sectorSize".to_owned(),
                    Node::Int(c.disk_image.sector_size.to_string()),
                )]),
            ));
        }
        root.push(("customization".to_owned(), Node::Map(cust)));
        Node::Map(root)
    }
}

fn has_tag(v: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value;
    match v {
        Value::Tagged(_) => true,
        Value::Sequence(items) => items.iter().any(has_tag),
        Value::Mapping(m) => m.iter().any(|(k, v)| has_tag(k) || has_tag(v)),
        _ => false,
    }
}

/// Free-form overlay options as Go decodes them into `map[string]any` and re-encodes them.
fn value_node(v: &serde_yaml_ng::Value) -> Node {
    use serde_yaml_ng::Value;
    match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Node::Int(i.to_string()),
            (None, Some(u), _) => Node::Int(u.to_string()),
            (_, _, Some(f)) => Node::Float(f),
            _ => Node::Null,
        },
        Value::String(s) => Node::Str(s.clone()),
        Value::Sequence(items) => Node::Seq(items.iter().map(value_node).collect()),
        Value::Mapping(m) => value_map_node(m),
        // Rejected by `Schematic::parse`; only reachable for hand-built values.
        Value::Tagged(t) => value_node(&t.value),
    }
}

fn value_map_node(m: &serde_yaml_ng::Mapping) -> Node {
    let mut entries: Vec<(String, Node)> = m
        .iter()
        .map(|(k, v)| {
            let key = match k {
                serde_yaml_ng::Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned(),
            };
            (key, value_node(v))
        })
        .collect();
    entries.sort_by(|a, b| yaml_v3_emit::go_key_cmp(&a.0, &b.0));
    Node::Map(entries)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    /// The factory's own published pairs (spec part A, "Test vectors").
    const VECTORS: &[(&str, &str)] = &[
        (
            "customization: {}\n",
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
        ),
        (
            "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n",
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        ),
        (
            "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
        ),
        (
            "customization:\n    meta:\n        - key: 10\n          value: foo\n",
            "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
        ),
        (
            "customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
            "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
        ),
        (
            "customization:\n    diskImage:\n        sectorSize: 4096\n",
            "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
        ),
        (
            "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\ncustomization: {}\n",
            "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
        ),
    ];

    #[test]
    fn published_vectors_hash_and_round_trip() {
        for (yaml, id) in VECTORS {
            assert_eq!(SchematicId::of_canonical_yaml(yaml).to_string(), *id);
            let s = Schematic::parse(yaml).unwrap();
            let c = s.canonicalize();
            assert_eq!(&c.yaml, yaml);
            assert_eq!(
                c.offline_id(),
                OfflineId::Exact {
                    id: id.parse().unwrap()
                }
            );
        }
    }

    #[test]
    fn differently_written_inputs_normalise_to_the_vectors() {
        let vanilla = VECTORS[0].1;
        for input in [
            "",
            "{}",
            "customization: {}",
            "customization:",
            "customization:\n  extraKernelArgs: []\n",
            "customization:\n  systemExtensions: {}\n",
            "customization:\n  bootloader: none\n",
            "# just a comment\n",
        ] {
            let id = Schematic::parse(input).unwrap().offline_id();
            assert_eq!(id.exact().unwrap().to_string(), vanilla, "{input:?}");
        }
        let hex_meta =
            Schematic::parse("customization:\n  meta:\n    - key: 0xa\n      value: foo\n")
                .unwrap();
        assert_eq!(
            hex_meta.offline_id().exact().unwrap().to_string(),
            VECTORS[3].1
        );
        let json = r#"{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/qemu-guest-agent"]}}}"#;
        assert_eq!(
            Schematic::parse(json)
                .unwrap()
                .offline_id()
                .exact()
                .unwrap()
                .to_string(),
            VECTORS[1].1
        );
        assert_eq!(
            Schematic::with_extensions([
                "siderolabs/qemu-guest-agent",
                "siderolabs/qemu-guest-agent"
            ])
            .offline_id()
            .exact()
            .unwrap()
            .to_string(),
            VECTORS[1].1
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_a_location() {
        let err = Schematic::parse("customization:\n  extraKernelArg: [a]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("extraKernelArg"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(Schematic::parse("foo: 1\n").is_err());
        assert!(
            Schematic::parse("customization:\n  meta:\n    - key: 256\n      value: x\n").is_err()
        );
        assert!(Schematic::parse("customization:\n  bootloader: auto\n").is_err());
        // Go's decoder takes YAML 1.1 booleans for bool fields.
        let yes = Schematic::parse(
            "customization:\n  secureboot:\n    includeWellKnownCertificates: yes\n",
        )
        .unwrap();
        assert!(yes.customization.secureboot.include_well_known_certificates);
        assert!(
            Schematic::parse(
                "customization:\n  secureboot:\n    includeWellKnownCertificates: maybe\n"
            )
            .is_err()
        );
    }

    #[test]
    fn field_order_and_literal_blocks() {
        let s = Schematic::parse(
            "customization:\n  diskImage: {sectorSize: 512}\n  bootloader: sd-boot\n  systemExtensions:\n    officialExtensions: [b, a]\n  extraKernelArgs: [x]\n  embeddedMachineConfiguration: |\n    version: v1alpha1\n    machine:\n      type: worker\noverlay:\n  name: rpi\n  image: i\n  options:\n    z: 1\n    a: [true, s]\n",
        )
        .unwrap();
        let c = s.canonicalize();
        assert_eq!(
            c.yaml,
            "overlay:\n    image: i\n    name: rpi\n    options:\n        a:\n            - true\n            - s\n        z: 1\ncustomization:\n    embeddedMachineConfiguration: |\n        version: v1alpha1\n        machine:\n          type: worker\n    extraKernelArgs:\n        - x\n    systemExtensions:\n        officialExtensions:\n            - b\n            - a\n    bootloader: sd-boot\n    diskImage:\n        sectorSize: 512\n"
        );
        assert!(c.uncertain.is_empty());
    }

    #[test]
    fn quoted_strings_make_the_offline_id_untrusted() {
        let s = Schematic::parse("customization:\n  extraKernelArgs: [\"yes\", ok]\n").unwrap();
        match s.offline_id() {
            OfflineId::NeedsFactory { reasons } => {
                assert_eq!(reasons.len(), 1);
                assert_eq!(reasons[0].field, "customization.extraKernelArgs.[0]");
                assert_eq!(reasons[0].value, "yes");
            }
            other => panic!("expected NeedsFactory, got {other:?}"),
        }
        assert!(s.canonical_yaml().contains("- 'yes'\n"));
    }

    /// Strings the emitter's analysis forces into quotes are written the same way by yaml.v3
    /// and yaml/v4 (libyaml `yaml_emitter_analyze_scalar`/`select_scalar_style`: a leading
    /// flow indicator forbids plain, so `{}` is single-quoted), and so are strings that
    /// resolve to another type (double-quoted): their IDs are computed offline. The layout is
    /// vector 4's (`meta` with `key: 10`, factory unit test), only the value differs; the IDs
    /// are SHA-256 of the bytes shown.
    #[test]
    fn emitter_quoted_strings_have_offline_ids() {
        let s = Schematic::parse("customization:\n  meta:\n    - key: 0xa\n      value: '{}'\n")
            .unwrap();
        let c = s.canonicalize();
        assert_eq!(
            c.yaml,
            "customization:\n    meta:\n        - key: 10\n          value: '{}'\n"
        );
        assert_eq!(
            s.offline_id().exact().map(|id| id.to_string()).as_deref(),
            Some("de3de71abf5a50551986885ddf49ce25e86459a502da360255704ecffdec2e35")
        );
        let s =
            Schematic::parse("customization:\n  extraKernelArgs: [' lead', 'key: val', 'true']\n")
                .unwrap();
        assert_eq!(
            s.canonical_yaml(),
            "customization:\n    extraKernelArgs:\n        - ' lead'\n        - 'key: val'\n        - \"true\"\n"
        );
        assert_eq!(
            s.offline_id().exact().map(|id| id.to_string()).as_deref(),
            Some("01b3b8d7c0462aadcc68e82d5024c6dd721eec38fbed5793d42f270232faab87")
        );
    }

    /// Where the libraries the factory has used disagree, the refusal stays.
    #[test]
    fn version_dependent_strings_still_need_the_factory() {
        for (value, yaml_v4) in [("off", "'off'"), ("12:30", "'12:30'"), ("<<", "'<<'")] {
            let mut s = Schematic::default();
            s.customization.extra_kernel_args = vec![value.to_owned()];
            assert!(s.offline_id().exact().is_none(), "{value}");
            assert!(
                s.canonical_yaml().contains(&format!("- {yaml_v4}\n")),
                "{value}"
            );
        }
        let mut s = Schematic::default();
        for text in ["  indented\nx\n", "a\n\tb\n", " \n"] {
            s.customization.embedded_machine_configuration = text.to_owned();
            assert!(s.offline_id().exact().is_none(), "{text:?}");
        }
    }

    #[test]
    fn ids_parse_strictly() {
        assert!("ABC".parse::<SchematicId>().is_err());
        assert!(VECTORS[0].1.to_uppercase().parse::<SchematicId>().is_err());
        assert_eq!(SchematicId::vanilla().to_string(), VECTORS[0].1);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z][a-z0-9/._=,-]{0,20}",
                "[ -~]{0,12}",
                "[ -~\t\n\r\u{85}\u{a0}é\u{1F600}'\"#:-]{0,16}",
                Just("yes".to_owned()),
                Just("12:30".to_owned()),
                Just("0x10".to_owned()),
                Just(String::new()),
                "([a-z: ]{1,10}\n){1,4}",
            ]
        }

        fn schematic() -> impl Strategy<Value = Schematic> {
            (
                (
                    prop::collection::vec(text(), 0..4),
                    prop::collection::vec((any::<u8>(), text()), 0..3),
                    prop::collection::vec(text(), 0..4),
                    text(),
                ),
                (
                    prop_oneof![
                        Just(Bootloader::None),
                        Just(Bootloader::DualBoot),
                        Just(Bootloader::SdBoot),
                        Just(Bootloader::Grub)
                    ],
                    text(),
                    any::<bool>(),
                    any::<u64>(),
                    text(),
                    text(),
                    prop::collection::btree_map("[a-z][a-z0-9_]{0,6}", text(), 0..3),
                ),
            )
                .prop_map(
                    |((args, meta, exts, emc), (bl, keys, wk, sector, img, name, opts))| {
                        Schematic {
                            owner: String::new(),
                            overlay: Overlay {
                                image: img,
                                name,
                                options: opts
                                    .into_iter()
                                    .map(|(k, v)| (k, serde_yaml_ng::Value::String(v)))
                                    .collect(),
                            },
                            customization: Customization {
                                embedded_machine_configuration: emc,
                                extra_kernel_args: args,
                                meta: meta
                                    .into_iter()
                                    .map(|(key, value)| MetaValue { key, value })
                                    .collect(),
                                system_extensions: SystemExtensions {
                                    official_extensions: exts,
                                },
                                bootloader: bl,
                                secureboot: SecureBoot {
                                    enroll_keys: keys,
                                    include_well_known_certificates: wk,
                                },
                                disk_image: DiskImage {
                                    sector_size: sector,
                                },
                            },
                        }
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// parse → emit → parse is stable, and the canonical YAML is a fixed point.
            #[test]
            fn canonicalisation_is_stable(s in schematic()) {
                // Literal blocks with indicators or tab-led lines are written as Go writes
                // them, which libyaml-based readers (serde_yaml_ng) cannot always read back
                // (an indentation indicator inside a sequence item); such IDs are reported
                // uncertain (`version_dependent_strings_still_need_the_factory`).
                prop_assume!(s.canonicalize().uncertain.iter().all(|u| !u.value.contains('\n')));
                let c1 = s.canonicalize();
                let back = Schematic::parse(&c1.yaml)
                    .map_err(|e| TestCaseError::fail(format!("{e}\n{}", c1.yaml)))?;
                prop_assert_eq!(&back, &s, "yaml:\n{}", c1.yaml);
                let c2 = back.canonicalize();
                prop_assert_eq!(&c2.yaml, &c1.yaml);
                prop_assert_eq!(c2.digest, c1.digest);
                prop_assert!(c1.yaml.ends_with('\n') && !c1.yaml.ends_with("\n\n") || c1.yaml.ends_with("|\n"));
            }

            /// Only strings whose Go output is certain give an exact offline ID.
            #[test]
            fn exact_ids_only_for_plain_strings(args in prop::collection::vec(text(), 1..4)) {
                let mut s = Schematic::default();
                s.customization.extra_kernel_args = args.clone();
                let all_known = args.iter().all(|a| crate::yaml::uncertainty(a, false).is_none());
                prop_assert_eq!(s.offline_id().exact().is_some(), all_known);
            }
        }
    }
}
