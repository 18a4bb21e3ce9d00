//! Reading the referenced Secrets and the generated credentials of managed backends.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::error::Error;
use crate::build::SecretData;
use crate::build::references::{SecretKeyRef, generated_secrets, referenced_secret_keys};
use crate::crd::SockudoCluster;

/// Data of every referenced Secret, and the `secret/key` pairs that are missing.
pub async fn read_referenced(
    secrets: &Api<Secret>,
    cluster: &SockudoCluster,
) -> Result<(BTreeMap<String, SecretData>, Vec<String>), Error> {
    let mut data: BTreeMap<String, SecretData> = BTreeMap::new();
    let mut missing = Vec::new();
    for SecretKeyRef { secret, key } in referenced_secret_keys(cluster) {
        if !data.contains_key(&secret)
            && let Some(s) = secrets.get_opt(&secret).await?
        {
            let values = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.insert(secret.clone(), values);
        }
        if !data.get(&secret).is_some_and(|d| d.contains_key(&key)) {
            missing.push(format!("{secret}/{key}"));
        }
    }
    Ok((data, missing))
}

/// 32 random bytes as hex after a letter: safe inside redis.conf, URLs and NATS config without
/// quoting. The letter matters: nats.conf parses a `$VAR` reference's value, and a bare value
/// starting with a digit (`1e5...`) is read as a number, or is a parse error.
pub fn random_credential() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(std::iter::once("s".to_string())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect())
}

/// The generated credential of every managed backend: the one already stored, else a new one.
pub async fn generated(
    secrets: &Api<Secret>,
    cluster: &SockudoCluster,
) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for SecretKeyRef { secret, key } in generated_secrets(cluster) {
        let existing = secrets
            .get_opt(&secret)
            .await?
            .and_then(|s| s.data)
            .and_then(|d| {
                d.get(&key)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            })
            .filter(|v| !v.is_empty());
        let value = match existing {
            Some(v) => v,
            None => random_credential()?,
        };
        out.insert(secret, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_start_with_a_letter() {
        for _ in 0..64 {
            let c = super::random_credential().unwrap();
            assert!(c.starts_with(|ch: char| ch.is_ascii_alphabetic()), "{c}");
            assert_eq!(c.len(), 65);
        }
    }
}
