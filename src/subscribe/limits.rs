//! `[subscriptions].max_per_client` and `max_total`: a subscription holds
//! a [`Slot`] while it is open, and gives it back when it ends, however it
//! ends (the slot is released on drop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::telemetry::metrics;

/// Open subscriptions, in total and by client.
#[derive(Default)]
pub struct Counts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    total: u32,
    by_client: HashMap<String, u32>,
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Client(u32),
    Total(u32),
}

impl Full {
    pub fn message(&self) -> String {
        match self {
            Full::Client(max) => {
                format!("this client has {max} subscriptions open already (max_per_client)")
            }
            Full::Total(max) => {
                format!("the gateway has {max} subscriptions open already (max_total)")
            }
        }
    }
}

/// One open subscription's place in the counts.
pub struct Slot {
    counts: Arc<Counts>,
    client: String,
}

impl Counts {
    /// Takes a place for `client` (`sub:…` or `ip:…`), within both limits.
    pub fn take(
        self: &Arc<Self>,
        client: &str,
        max_per_client: u32,
        max_total: u32,
    ) -> Result<Slot, Full> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.total >= max_total {
            return Err(Full::Total(max_total));
        }
        let open = inner.by_client.get(client).copied().unwrap_or(0);
        if open >= max_per_client {
            return Err(Full::Client(max_per_client));
        }
        inner.total += 1;
        inner.by_client.insert(client.to_owned(), open + 1);
        metrics::subscriptions_open(1.0);
        Ok(Slot {
            counts: self.clone(),
            client: client.to_owned(),
        })
    }

    /// Subscriptions open now.
    pub fn total(&self) -> u32 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.counts.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.total = inner.total.saturating_sub(1);
        if let Some(open) = inner.by_client.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                inner.by_client.remove(&self.client);
            }
        }
        metrics::subscriptions_open(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_to_its_limit_and_gets_its_place_back() {
        let counts = Arc::new(Counts::default());
        let first = counts.take("ip:a", 2, 10).expect("first");
        let _second = counts.take("ip:a", 2, 10).expect("second");
        assert_eq!(counts.take("ip:a", 2, 10).err(), Some(Full::Client(2)));
        let _other = counts.take("ip:b", 2, 10).expect("another client");
        drop(first);
        assert!(counts.take("ip:a", 2, 10).is_ok());
    }

    #[test]
    fn the_total_limit_holds_across_clients() {
        let counts = Arc::new(Counts::default());
        let _a = counts.take("ip:a", 5, 2).expect("a");
        let _b = counts.take("ip:b", 5, 2).expect("b");
        assert_eq!(counts.take("ip:c", 5, 2).err(), Some(Full::Total(2)));
        assert_eq!(counts.total(), 2);
    }
}
