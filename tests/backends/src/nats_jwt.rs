//! NATS decentralized auth ("operator mode"): a throwaway operator, a system account and one
//! application account with JetStream enabled, as JWTs signed with nkeys, plus user `.creds`
//! files for that account. A [`NatsServer`](crate::NatsServer) started with
//! [`NatsAuth::Operator`](crate::NatsAuth::Operator) trusts the operator and knows both accounts
//! through `resolver: MEMORY`.
//!
//! JWT v2 layout (nats-io/jwt): header `{"typ":"JWT","alg":"ed25519-nkey"}`, claims with `jti`,
//! `iat`, `iss` (the signer's public key), `sub` (the subject's public key), `name` and a `nats`
//! object with `type` and `version: 2`; each part base64url without padding, the signature being
//! the issuer's ed25519 signature over `header.claims`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};
use sha2::{Digest, Sha512_256};

use crate::process::BackendError;

/// An account: its keys and the JWT the operator signed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignedAccount {
    public: String,
    seed: String,
    jwt: String,
}

/// An operator with a system account and one application account (`account_public`), whose
/// users get JetStream (memory and file storage, unlimited). Two calls give two unrelated
/// trust chains: users of one are strangers to a server of the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOperator {
    operator_jwt: String,
    system: SignedAccount,
    account: SignedAccount,
}

fn jwt_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Command {
        what: "signing a NATS JWT".into(),
        detail: e.to_string(),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT for `subject` with `nats` claims, signed by `issuer`.
fn sign(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> Result<String, BackendError> {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(jwt_error)?
        .as_secs();
    let mut claims = json!({
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    // The id is a digest of the claims (as the reference encoder makes it): unique per JWT.
    let digest = Sha512_256::digest(claims.to_string().as_bytes());
    claims["jti"] = Value::String(data_encoding::BASE32_NOPAD.encode(&digest));
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).map_err(jwt_error)?;
    Ok(format!("{signed}.{}", b64(&signature)))
}

fn account(operator: &KeyPair, name: &str, jetstream: bool) -> Result<SignedAccount, BackendError> {
    let key = KeyPair::new_account();
    // -1 is "unlimited"; JetStream is enabled by non-zero storage limits.
    let js = if jetstream { -1 } else { 0 };
    let nats = json!({
        "type": "account",
        "version": 2,
        "limits": {
            "subs": -1, "data": -1, "payload": -1,
            "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": js, "disk_storage": js, "streams": js, "consumer": js,
        },
    });
    Ok(SignedAccount {
        jwt: sign(operator, &key.public_key(), name, nats)?,
        public: key.public_key(),
        seed: key.seed().map_err(jwt_error)?,
    })
}

impl NatsOperator {
    pub fn generate(name: &str) -> Result<NatsOperator, BackendError> {
        let operator = KeyPair::new_operator();
        let system = account(&operator, "SYS", false)?;
        let account = account(&operator, &format!("{name}-app"), true)?;
        let operator_jwt = sign(
            &operator,
            &operator.public_key(),
            name,
            json!({"type": "operator", "version": 2, "system_account": system.public}),
        )?;
        Ok(NatsOperator {
            operator_jwt,
            system,
            account,
        })
    }

    /// Public key of the application account (the one users are issued in).
    pub fn account_public(&self) -> &str {
        &self.account.public
    }

    /// A `.creds` file (user JWT and nkey seed) for a new user of the application account,
    /// allowed to publish and subscribe everywhere.
    pub fn user_creds(&self, user: &str) -> Result<String, BackendError> {
        let account = KeyPair::from_seed(&self.account.seed).map_err(jwt_error)?;
        let key = KeyPair::new_user();
        let nats = json!({
            "type": "user",
            "version": 2,
            "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1,
        });
        let jwt = sign(&account, &key.public_key(), user, nats)?;
        let seed = key.seed().map_err(jwt_error)?;
        Ok(format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        ))
    }

    /// The server config lines that trust this operator and preload its accounts.
    pub(crate) fn server_config(&self) -> String {
        format!(
            "operator: \"{}\"\nsystem_account: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n  \"{}\": \"{}\"\n  \"{}\": \"{}\"\n}}\n",
            self.operator_jwt,
            self.system.public,
            self.system.public,
            self.system.jwt,
            self.account.public,
            self.account.jwt,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn user_creds_carry_a_jwt_signed_by_the_account() {
        let op = NatsOperator::generate("t").unwrap();
        let creds = op.user_creds("alice").unwrap();
        let jwt = creds.lines().nth(1).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0])["alg"], "ed25519-nkey");
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], op.account_public());
        assert_eq!(claims["nats"]["type"], "user");
        assert_eq!(claims["nats"]["version"], 2);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signer = KeyPair::from_public_key(op.account_public()).unwrap();
        signer
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        assert!(
            creds.contains("-----BEGIN USER NKEY SEED-----\nSU"),
            "{creds}"
        );
    }
}
