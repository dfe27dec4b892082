//! Whole files in the age format (binary, not armored), streamed: what `age -r ... -o FILE`
//! writes and `age -d -i KEY FILE` reads. For data too large or too sensitive to hold as a
//! SOPS document, e.g. etcd snapshots: the plaintext goes from the producer straight into
//! the encryptor, and from the decryptor straight to the consumer.
//!
//! Recipients and identities are the same [`Recipient`]s and [`Identities`] SOPS files use,
//! so a `.sops.yaml` creation rule's keys and `SOPS_AGE_KEY_FILE` & co. work unchanged.
//!
//! ```
//! use std::io::{Read, Write};
//! let mut ids = sops_age::Identities::new();
//! let r = sops_age::Recipient::parse(&ids.generate())?;
//! let mut w = sops_age::agefile::Encrypt::new(&[r], Vec::new())?;
//! w.write_all(b"snapshot bytes")?;
//! let file = w.finish()?;
//! let mut plain = Vec::new();
//! sops_age::agefile::decrypt(&ids, &file[..])?.read_to_end(&mut plain)?;
//! assert_eq!(plain, b"snapshot bytes");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{Read, Write};

use crate::error::{Error, Result};
use crate::keys::{Identities, Recipient};

/// The first bytes of every binary age file (the version line of the header).
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// An age encryptor writing to `W`: everything written is encrypted (64 KiB STREAM chunks)
/// as it arrives. Call [`Encrypt::finish`]: without it the file is truncated and will not
/// decrypt.
pub struct Encrypt<W: Write> {
    inner: age::stream::StreamWriter<W>,
}

impl<W: Write> std::fmt::Debug for Encrypt<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encrypt")
    }
}

impl<W: Write> Encrypt<W> {
    /// Start an age file to `recipients` on `out` (the header is written at once).
    pub fn new(recipients: &[Recipient], out: W) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        let enc = age::Encryptor::with_recipients(
            recipients.iter().map(|r| r.age() as &dyn age::Recipient),
        )
        .map_err(|e| Error::Age(e.to_string()))?;
        let inner = enc
            .wrap_output(out)
            .map_err(|e| Error::Age(format!("writing the age header: {e}")))?;
        Ok(Encrypt { inner })
    }

    /// Write the last chunk and hand back the output.
    pub fn finish(self) -> Result<W> {
        self.inner
            .finish()
            .map_err(|e| Error::Age(format!("finishing the age file: {e}")))
    }
}

impl<W: Write> Write for Encrypt<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Open an age file for reading with `identities`. The header is checked here (not an age
/// file, or not encrypted to any of the identities: an error naming the cause); the
/// payload is authenticated chunk by chunk while reading, so a truncated or altered file
/// fails with an `InvalidData` read error at the damaged chunk.
pub fn decrypt<'a, R: Read + 'a>(identities: &Identities, input: R) -> Result<impl Read + 'a> {
    let dec = age::Decryptor::new(input).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            Error::AgeFile("not an age file (its header is missing or damaged)".into())
        }
        other => Error::AgeFile(format!("reading the header: {other}")),
    })?;
    if identities.is_empty() {
        return Err(Error::NoIdentities {
            details: load_details(identities),
        });
    }
    dec.decrypt(identities.age_identities())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::AgeFile(format!(
                "it is not encrypted to any of the {} loaded identities{}",
                identities.len(),
                load_details(identities)
            )),
            other => Error::AgeFile(format!("decrypting: {other}")),
        })
}

fn load_details(ids: &Identities) -> String {
    if ids.load_errors().is_empty() {
        String::new()
    } else {
        format!("; identity load errors: {}", ids.load_errors().join("; "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pair() -> (Identities, Recipient) {
        let mut ids = Identities::new();
        let r = Recipient::parse(&ids.generate()).unwrap();
        (ids, r)
    }

    fn encrypt(r: &Recipient, data: &[u8]) -> Vec<u8> {
        let mut w = Encrypt::new(std::slice::from_ref(r), Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_over_several_chunks() {
        let (ids, r) = pair();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = encrypt(&r, &data);
        assert!(file.starts_with(MAGIC));
        let mut back = Vec::new();
        decrypt(&ids, &file[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn wrong_key_truncation_and_garbage_are_errors() {
        let (_, r) = pair();
        let (other, _) = pair();
        let file = encrypt(&r, &[7u8; 100_000]);
        let e = decrypt(&other, &file[..]).err().unwrap();
        assert!(e.to_string().contains("not encrypted to any"), "{e}");
        let (ids, r) = pair();
        let file = encrypt(&r, &[7u8; 100_000]);
        let cut = &file[..file.len() - 1000];
        let mut sink = Vec::new();
        assert!(decrypt(&ids, cut).unwrap().read_to_end(&mut sink).is_err());
        assert!(decrypt(&ids, &b"hello"[..]).is_err());
        assert!(matches!(
            Encrypt::new(&[], Vec::new()).unwrap_err(),
            Error::NoRecipients
        ));
    }
}
