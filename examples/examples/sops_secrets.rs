//! sops-age in a nutshell: encrypt a typed value into a SOPS YAML file, read it back into
//! the type, change one value, and see that only that value's ciphertext changed.
//!
//! Run: `cargo run -p homelab-examples --example sops_secrets`
//! With a real key: `SOPS_AGE_KEY_FILE=keys.txt cargo run -p homelab-examples --example sops_secrets -- secrets.yaml`
//! decrypts an existing file instead and prints its top-level keys (never the values).

use sops_age::{Decrypted, EncryptOptions, Format, Identities, Recipient, Value};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LabSecrets {
    proxmox_token_id: String,
    proxmox_token_secret: String,
    cluster_name_unencrypted: String,
    node_count: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(path) = std::env::args().nth(1) {
        let data = std::fs::read(&path)?;
        let ids = Identities::from_env();
        let file = Decrypted::open(&data, Format::from_path(&path), &ids)?;
        for doc in file.documents() {
            let keys: Vec<&str> = doc.entries().map(|(k, _)| k).collect();
            println!("{path}: decrypted, MAC ok, top-level keys: {keys:?}");
        }
        return Ok(());
    }

    // A throwaway identity; real code uses Identities::from_env().
    let mut ids = Identities::new();
    let recipient = Recipient::parse(&ids.generate())?;
    let opts = EncryptOptions::new(vec![recipient]);

    let secrets = LabSecrets {
        proxmox_token_id: "homelab@pve!ci".into(),
        proxmox_token_secret: "5e3f0c1a-9d2b-4c8e-a7f6-1b2c3d4e5f60".into(),
        cluster_name_unencrypted: "lab".into(),
        node_count: 3,
    };
    let file = sops_age::to_vec(&secrets, Format::Yaml, &opts)?;
    println!("--- encrypted file ---\n{}", String::from_utf8_lossy(&file));

    let back: LabSecrets = sops_age::from_slice(&file, &ids)?;
    println!(
        "decrypted: token id {}, {} nodes",
        back.proxmox_token_id, back.node_count
    );

    // Edit one value: the other ciphertexts stay byte-identical (IV reuse, like sops).
    let mut opened = Decrypted::open(&file, Format::Yaml, &ids)?;
    opened.set(r#"["node_count"]"#, Value::Int(5))?;
    let edited = opened.encrypt(false)?;
    let (old, new) = (
        String::from_utf8_lossy(&file),
        String::from_utf8_lossy(&edited),
    );
    let changed: Vec<&str> = old
        .lines()
        .zip(new.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.split(':').next().unwrap_or("").trim())
        .collect();
    println!("lines changed by the edit: {changed:?}");
    Ok(())
}
