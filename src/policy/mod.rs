//! The policy: what ops write in `policies/*.yaml`, and the validated model the gateway runs.
//!
//! Loading goes parse → expand `${VARS}` → read each section → validate, and gathers every
//! problem with its field path instead of stopping at the first (see [`Diagnostics`]).

mod diagnostics;
mod env;
mod load;
mod model;
pub mod schema;

pub use diagnostics::{Diagnostics, PolicyError, Problem};
pub use env::{expand, references, Env, ExpandError, ProcessEnv, Reference};
pub use load::{
    environment_and_jwt, load_file, load_file_with_secrets, parse, parse_with_secrets,
    redis_password_secret, Loaded,
};
pub use model::{Policy, ServerSettings};
pub use schema::Environment;

/// `"; did you mean `x`?"` when one of `candidates` is close to `word`, else `""`.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}
