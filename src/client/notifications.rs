//! The typed client's notification calls (`/console/v1/notifications/...`).

use palyra_actors::SecretString;
use palyra_actors::notifications::{Delivery, NotificationChannel};
use reqwest::Method;
use serde::Deserialize;

use super::{ClientError, ControlPlaneClient, path_segment};

/// `GET /console/v1/notifications/channels`.
#[derive(Debug, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<NotificationChannel>,
}

/// `GET /console/v1/notifications/deliveries`.
#[derive(Debug, Deserialize)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// A channel just created: its signing secret, shown once, and its record.
#[derive(Debug, Deserialize)]
pub struct CreatedChannel {
    pub secret: SecretString,
    #[serde(flatten)]
    pub channel: NotificationChannel,
}

/// `POST .../channels/{id}/test`.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct TestQueued {
    pub event_id: String,
}

impl ControlPlaneClient {
    pub async fn list_channels(&self) -> Result<ChannelList, ClientError> {
        self.call(Method::GET, "/console/v1/notifications/channels", None)
            .await
    }

    pub async fn create_channel(
        &self,
        body: serde_json::Value,
    ) -> Result<CreatedChannel, ClientError> {
        self.call(
            Method::POST,
            "/console/v1/notifications/channels",
            Some(body),
        )
        .await
    }

    pub async fn delete_channel(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/console/v1/notifications/channels/{}", path_segment(id));
        self.call_no_content(Method::DELETE, &path).await
    }

    pub async fn test_channel(&self, id: &str) -> Result<TestQueued, ClientError> {
        let path = format!(
            "/console/v1/notifications/channels/{}/test",
            path_segment(id)
        );
        self.call(Method::POST, &path, None).await
    }

    pub async fn list_deliveries(
        &self,
        channel_id: Option<&str>,
        status: Option<&str>,
    ) -> Result<DeliveryList, ClientError> {
        let mut query = Vec::new();
        if let Some(id) = channel_id {
            query.push(format!("channel_id={}", path_segment(id)));
        }
        if let Some(status) = status {
            query.push(format!("status={}", path_segment(status)));
        }
        let path = if query.is_empty() {
            "/console/v1/notifications/deliveries".to_owned()
        } else {
            format!("/console/v1/notifications/deliveries?{}", query.join("&"))
        };
        self.call(Method::GET, &path, None).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_created_channel_decodes() {
        let body = r#"{"channel_id":"ch_0011223344556677","url":"http://127.0.0.1:1/hook","format":"palyra","events":["run_completed"],"agent_id":null,"objective_id":null,"created_at":"2026-12-01T17:03:28.043Z","disabled":false,"disabled_at":null,"disabled_reason":null,"secret":"abc"}"#;
        let created: super::CreatedChannel = serde_json::from_str(body).unwrap();
        assert_eq!(created.secret.expose(), "abc");
    }
}
