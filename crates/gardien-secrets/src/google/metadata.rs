//! The metadata server's token for the instance's default service account (Cloud Run, GKE
//! with Workload Identity, Compute Engine).

use super::token::{AccessToken, TokenAnswer};

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// `GET http://<host>/computeMetadata/v1/instance/service-accounts/default/token` with
/// `Metadata-Flavor: Google` (the server refuses requests without it).
pub(super) async fn fetch_token(
    client: &reqwest::Client,
    host: &str,
) -> Result<AccessToken, String> {
    let url = format!("http://{host}{TOKEN_PATH}");
    let response = client
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| format!("unreachable: {}", super::secret_manager::describe_error(&e)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        format!(
            "reading the answer: {}",
            super::secret_manager::describe_error(&e)
        )
    })?;
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    TokenAnswer::parse(&body)
}
