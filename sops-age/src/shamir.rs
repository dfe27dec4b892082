//! Shamir secret sharing over GF(2^8) as sops (HashiCorp Vault's scheme) does it:
//! one share per key group, x coordinates 1, 2, 3…, the x byte appended to each share.

use rand::RngCore;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        let hi = a & 0x80;
        a <<= 1;
        if hi != 0 {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    p
}

fn gf_inv(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8)
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u32;
    while e > 0 {
        if e & 1 != 0 {
            result = gf_mul(result, base);
        }
        base = gf_mul(base, base);
        e >>= 1;
    }
    result
}

/// Split `secret` into `parts` shares of which `threshold` recombine it.
pub(crate) fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    if threshold < 2 || parts < threshold || parts > 255 {
        return Err(Error::Shamir(format!(
            "cannot split into {parts} parts with threshold {threshold} (need 2 <= threshold <= parts <= 255)"
        )));
    }
    let mut rng = rand::thread_rng();
    let mut shares: Vec<Zeroizing<Vec<u8>>> = (0..parts)
        .map(|i| {
            let mut v = Vec::with_capacity(secret.len() + 1);
            v.resize(secret.len(), 0);
            v.push((i + 1) as u8);
            Zeroizing::new(v)
        })
        .collect();
    let mut coeffs = Zeroizing::new(vec![0u8; threshold]);
    for (idx, &byte) in secret.iter().enumerate() {
        coeffs[0] = byte;
        rng.fill_bytes(&mut coeffs[1..]);
        for share in shares.iter_mut() {
            let x = share[secret.len()];
            // Horner evaluation
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = gf_mul(y, x) ^ c;
            }
            share[idx] = y;
        }
    }
    Ok(shares)
}

/// Recombine shares (each `y… || x`) by Lagrange interpolation at 0.
pub(crate) fn combine(shares: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>> {
    if shares.len() < 2 {
        return Err(Error::Shamir(
            "less than two parts cannot be used to reconstruct the secret".into(),
        ));
    }
    let len = shares[0].len();
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return Err(Error::Shamir(
            "all parts must be the same length and at least 2 bytes".into(),
        ));
    }
    let xs: Vec<u8> = shares.iter().map(|s| s[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err(Error::Shamir("duplicate part detected".into()));
        }
    }
    let mut out = Zeroizing::new(vec![0u8; len - 1]);
    for (i, &xi) in xs.iter().enumerate() {
        // basis polynomial l_i(0) = prod_{j != i} x_j / (x_j - x_i)   (subtraction is xor)
        let mut basis = 1u8;
        for (j, &xj) in xs.iter().enumerate() {
            if i != j {
                basis = gf_mul(basis, gf_mul(xj, gf_inv(xj ^ xi)));
            }
        }
        for (b, o) in out.iter_mut().enumerate() {
            *o ^= gf_mul(shares[i][b], basis);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_and_combine() {
        let secret = [42u8; 32];
        let shares = split(&secret, 3, 2).unwrap();
        assert_eq!(shares[0].len(), 33);
        assert_eq!(shares[0][32], 1);
        assert_eq!(shares[2][32], 3);
        assert_eq!(combine(&shares[..2]).unwrap().as_slice(), &secret);
        assert_eq!(
            combine(&[shares[0].clone(), shares[2].clone()])
                .unwrap()
                .as_slice(),
            &secret
        );
        assert_eq!(combine(&shares).unwrap().as_slice(), &secret);
        assert!(split(&secret, 3, 1).is_err());
        assert_eq!(gf_mul(gf_inv(0x53), 0x53), 1);
    }
}
