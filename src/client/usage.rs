//! The typed client's usage report (`GET /console/v1/usage`).

use palyra_actors::usage::{GroupBy, UsageReport};
use reqwest::Method;
use serde::Serialize;

use super::{ClientError, ControlPlaneClient, serde_urlencoded};

/// The query of `GET /console/v1/usage`; `None` leaves the daemon's default.
#[derive(Debug, Default, Clone, Serialize)]
pub struct UsageParams {
    pub group_by: Option<GroupBy>,
    /// `YYYY-MM-DD`, the first local day.
    pub from: Option<String>,
    /// `YYYY-MM-DD`, the last local day.
    pub to: Option<String>,
    /// An IANA time zone name.
    pub tz: Option<String>,
}

impl ControlPlaneClient {
    /// `GET /console/v1/usage`.
    pub async fn usage(&self, params: &UsageParams) -> Result<UsageReport, ClientError> {
        let qs = serde_urlencoded(params)?;
        self.call(Method::GET, &format!("/console/v1/usage{qs}"), None)
            .await
    }
}
