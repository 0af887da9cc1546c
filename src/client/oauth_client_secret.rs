//! The typed client's calls on a provider's OAuth client secret
//! (`/console/v1/auth/providers/{provider}/client-secret`): set or removed, never read.

use palyra_actors::SecretString;
use reqwest::Method;

use super::{ClientError, ControlPlaneClient, path_segment};

impl ControlPlaneClient {
    /// `PUT /console/v1/auth/providers/{provider}/client-secret` (admin).
    pub async fn set_client_secret(
        &self,
        provider: &str,
        secret: &SecretString,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/console/v1/auth/providers/{}/client-secret",
            path_segment(provider)
        );
        let body = serde_json::json!({ "client_secret": secret.expose() });
        self.send(self.authed(Method::PUT, &path)?.json(&body))
            .await
            .map(drop)
    }

    /// `DELETE /console/v1/auth/providers/{provider}/client-secret` (admin).
    pub async fn delete_client_secret(&self, provider: &str) -> Result<(), ClientError> {
        let path = format!(
            "/console/v1/auth/providers/{}/client-secret",
            path_segment(provider)
        );
        self.call_no_content(Method::DELETE, &path).await
    }
}
