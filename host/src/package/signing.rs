//! Signatures of packages, in minisign's format (its `minisign` tool reads and writes the same
//! keys and signatures): an ed25519 key pair (`plugins keygen`), the signature of a package's
//! manifest (`plugins pack --sign KEY`), and its check against the keys a registry trusts
//! (`plugins trust`).

use std::{io::Cursor, path::Path};

use minisign::{PublicKey, SecretKey, SecretKeyBox, SignatureBox};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{}: {cause}", path.display())]
    Io { path: std::path::PathBuf, cause: std::io::Error },
    #[error("{what}: {reason}")]
    Key { what: String, reason: String },
    #[error("{0}")]
    Minisign(String),
}

/// A public key a registry trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// minisign's key id, 16 hex digits.
    pub id: String,
    /// The key, base64 (minisign's public key line).
    pub public_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// The id of a key, as minisign prints it.
fn key_id(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(bytes))
}

impl TrustedKey {
    /// A key from its base64 line (`RW...`), or from a minisign `.pub` file's text.
    pub fn parse(text: &str, comment: &str) -> Result<TrustedKey, SigningError> {
        let text = text.trim();
        let line = text.lines().last().unwrap_or_default().trim();
        let key = PublicKey::from_base64(line).map_err(|e| SigningError::Key {
            what: "the public key".into(),
            reason: format!("not a minisign public key ({e})"),
        })?;
        Ok(TrustedKey { id: key_id(key.keynum()), public_key: key.to_base64(), comment: comment.to_string() })
    }

    fn key(&self) -> Result<PublicKey, SigningError> {
        PublicKey::from_base64(&self.public_key)
            .map_err(|e| SigningError::Key { what: format!("trusted key {}", self.id), reason: e.to_string() })
    }
}

/// Makes a key pair: `NAME.key` (the secret key, unencrypted, readable by its owner only) and
/// `NAME.pub` in `dir`. Returns the public key.
pub fn keygen(dir: &Path, name: &str) -> Result<TrustedKey, SigningError> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| SigningError::Minisign(e.to_string()))?;
    let (secret, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    for path in [&secret, &public] {
        if path.exists() {
            return Err(SigningError::Io {
                path: path.clone(),
                cause: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists already; not overwritten"),
            });
        }
    }
    let sk_box =
        pair.sk.to_box(Some("gymnos-host plugin signing key")).map_err(|e| SigningError::Minisign(e.to_string()))?;
    let pk_box = pair.pk.to_box().map_err(|e| SigningError::Minisign(e.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| SigningError::Io { path, cause }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    crate::fsio::write_atomically(&secret, sk_box.to_string().as_bytes(), 0o600).map_err(io(&secret))?;
    crate::fsio::write_atomically(&public, pk_box.to_string().as_bytes(), 0o644).map_err(io(&public))?;
    Ok(TrustedKey { id: key_id(pair.pk.keynum()), public_key: pair.pk.to_base64(), comment: String::new() })
}

/// Signs `data` with the secret key in `key_file`; the signature's text, and the key's id.
pub fn sign(key_file: &Path, data: &[u8], trusted_comment: &str) -> Result<(String, String), SigningError> {
    let text =
        std::fs::read_to_string(key_file).map_err(|cause| SigningError::Io { path: key_file.to_path_buf(), cause })?;
    let key =
        SecretKeyBox::from_string(&text).and_then(SecretKey::from_unencrypted_box).map_err(|e| SigningError::Key {
            what: key_file.display().to_string(),
            reason: format!("not an unencrypted minisign secret key ({e})"),
        })?;
    let signature = minisign::sign(None, &key, Cursor::new(data), Some(trusted_comment), None)
        .map_err(|e| SigningError::Minisign(e.to_string()))?;
    Ok((signature.to_string(), key_id(key.keynum())))
}

/// Who signed `data`: the id of the trusted key whose signature `signature` is. An unknown key
/// or a bad signature is an error naming the key id.
pub fn verify(trusted: &[TrustedKey], signature: &str, data: &[u8]) -> Result<String, SigningError> {
    let signature = SignatureBox::from_string(signature).map_err(|e| SigningError::Key {
        what: "the signature".into(),
        reason: format!("not a minisign signature ({e})"),
    })?;
    let id = key_id(signature.keynum());
    let key = trusted.iter().find(|k| k.id == id).ok_or_else(|| SigningError::Key {
        what: format!("key {id}"),
        reason: "signed by a key this registry does not trust (`gymnos-host plugins trust add PUBKEY`)".into(),
    })?;
    minisign::verify(&key.key()?, &signature, Cursor::new(data), true, false, false).map_err(|e| {
        SigningError::Key { what: format!("key {id}"), reason: format!("the signature does not verify ({e})") }
    })?;
    Ok(id)
}

/// The key id a signature names (trusted or not).
pub fn signer_of(signature: &str) -> Option<String> {
    SignatureBox::from_string(signature).ok().map(|s| key_id(s.keynum()))
}

/// Reads a public key given as a file (minisign's `.pub`) or as its base64 line.
pub fn public_key_argument(argument: &str) -> Result<TrustedKey, SigningError> {
    let path = Path::new(argument);
    let (text, comment) = match path.is_file() {
        true => (
            std::fs::read_to_string(path).map_err(|cause| SigningError::Io { path: path.to_path_buf(), cause })?,
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        ),
        false => (argument.to_string(), String::new()),
    };
    TrustedKey::parse(&text, &comment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_trusted_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "team").unwrap();
        let (signature, id) = sign(&dir.path().join("team.key"), b"manifest", "team").unwrap();
        assert_eq!(id, key.id);
        let trusted = vec![public_key_argument(dir.path().join("team.pub").to_str().unwrap()).unwrap()];
        assert_eq!(
            (&trusted[0].id, &trusted[0].public_key, trusted[0].comment.as_str()),
            (&key.id, &key.public_key, "team.pub")
        );
        assert_eq!(verify(&trusted, &signature, b"manifest").unwrap(), key.id);
        let changed = verify(&trusted, &signature, b"manifesT").unwrap_err().to_string();
        assert!(changed.starts_with(&format!("key {}: the signature does not verify", key.id)), "{changed}");
        let other = keygen(dir.path(), "other").unwrap();
        let unknown = verify(&[other], &signature, b"manifest").unwrap_err().to_string();
        assert!(unknown.contains("signed by a key this registry does not trust"), "{unknown}");
        assert!(keygen(dir.path(), "team").is_err(), "keys are never overwritten");
        assert!(public_key_argument("RWnot-a-key").is_err());
    }
}
