//! `[subscriptions].broker = "redis"`: a webhook received by one instance
//! reaches the subscribers of every instance. Each delivery is published
//! on one Redis pub/sub channel; every instance listens to it and hands
//! what it hears to its own subscribers. The receiving instance delivers
//! locally at once (so a Redis outage costs only the other instances) and
//! skips its own messages when they come back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use super::webhook::Delivery;
use crate::upstream::json;

/// The channel every instance publishes to and listens on.
const CHANNEL: &str = "conflux:webhooks";

/// How long a lost Redis connection waits before the listener reconnects.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

pub struct Broker {
    url: String,
    /// Tells this instance's messages from the others'.
    instance: String,
    publisher: redis::aio::ConnectionManager,
}

impl Broker {
    pub fn new(url: &str) -> Result<Broker, String> {
        Ok(Broker {
            url: url.to_owned(),
            instance: format!("{:016x}", fastrand::u64(..)),
            publisher: crate::redis_connection::connect(url)?,
        })
    }

    /// Publishes a delivery for the other instances; a Redis failure is
    /// logged (the local subscribers have it already).
    pub async fn publish(&self, webhook: &str, body: &[u8]) {
        // `instance \n webhook \n body`: neither an instance id nor a
        // webhook name holds a newline (the config allows neither).
        let mut message = Vec::with_capacity(body.len() + 64);
        message.extend_from_slice(self.instance.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(webhook.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(body);
        let mut connection = self.publisher.clone();
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(message)
            .query_async(&mut connection)
            .await;
        if let Err(err) = published {
            tracing::warn!(error = %err, webhook, "cannot publish a webhook delivery to Redis; only this instance's subscribers get it");
        }
    }

    /// Listens for the other instances' deliveries until the process ends,
    /// reconnecting after an outage (deliveries published meanwhile are
    /// lost: pub/sub keeps nothing).
    pub fn listen(self: &Arc<Self>, local: broadcast::Sender<Arc<Delivery>>) {
        let broker = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(err) = broker.listen_once(&local).await {
                    tracing::warn!(error = %err, "the subscriptions broker lost Redis; reconnecting");
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        });
    }

    async fn listen_once(
        &self,
        local: &broadcast::Sender<Arc<Delivery>>,
    ) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        tracing::info!("subscriptions broker listening on Redis");
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let payload = message.get_payload_bytes();
            let mut parts = payload.splitn(3, |b| *b == b'\n');
            let (Some(instance), Some(webhook), Some(body)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if instance == self.instance.as_bytes() {
                continue;
            }
            let Ok(body) = json::parse(body) else {
                continue;
            };
            let _ = local.send(Arc::new(Delivery {
                webhook: String::from_utf8_lossy(webhook).into_owned(),
                body,
            }));
        }
        Ok(())
    }
}
