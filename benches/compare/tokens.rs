//! The tokens of the comparison: RS256, signed by the fixture key, issuer
//! `https://id.bench`, audience `bench`; the key as a JWKS (gardien) and as a PEM public
//! key (HAProxy's `jwt_verify`); and a wrk Lua script that sends many distinct tokens in
//! turn, so gardien's token cache misses on each token's first use.

use std::fmt::Write as _;
use std::path::Path;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde_json::json;

const RSA_KEY: &str = include_str!("../../tests/fixtures/keys/rsa-a.pem");
pub const ISSUER: &str = "https://id.bench";
pub const AUDIENCE: &str = "bench";
pub const ORIGIN: &str = "https://app.example.com";

/// Writes `dir/jwks.json` (served by nginx) and `dir/signer.pem`; returns the PEM's path.
pub fn write_keys(dir: &Path) -> std::path::PathBuf {
    let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).expect("the fixture key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("a JWK");
    jwk.common.key_id = Some("bench".into());
    std::fs::write(dir.join("jwks.json"), json!({"keys": [jwk]}).to_string())
        .expect("write jwks.json");
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_KEY).expect("a PKCS#8 RSA key");
    let public = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("the public key as PEM");
    let path = dir.join("signer.pem");
    std::fs::write(&path, public).expect("write signer.pem");
    path
}

/// `count` valid tokens for distinct users, valid for an hour.
pub fn mint(count: usize) -> Vec<String> {
    let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).expect("the fixture key");
    let header = Header {
        kid: Some("bench".into()),
        ..Header::new(Algorithm::RS256)
    };
    let now = jsonwebtoken::get_current_timestamp();
    (0..count)
        .map(|i| {
            let claims = json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{i}"),
                "email": format!("user-{i}@example.com"), "roles": ["reader"],
                "iat": now, "nbf": now, "exp": now + 3600,
            });
            jsonwebtoken::encode(&header, &claims, &key).expect("a token")
        })
        .collect()
}

/// A wrk script sending `GET path` with each of `tokens` in turn (and the allowed Origin);
/// the requests are formatted once, in `init`, so wrk's own cost stays that of one header.
pub fn rotation_script(dir: &Path, path: &str, tokens: &[String]) -> std::path::PathBuf {
    let list = dir.join("tokens.txt");
    std::fs::write(&list, tokens.join("\n")).expect("write tokens.txt");
    let mut script = String::new();
    let _ = write!(
        script,
        r#"local requests = {{}}
local next = 0
function init(args)
  for token in io.lines("{list}") do
    requests[#requests + 1] = wrk.format("GET", "{path}", {{
      ["Authorization"] = "Bearer " .. token, ["Origin"] = "{ORIGIN}" }})
  end
end
function request()
  next = next % #requests + 1
  return requests[next]
end
"#,
        list = list.display()
    );
    let path = dir.join("rotate.lua");
    std::fs::write(&path, script).expect("write rotate.lua");
    path
}
