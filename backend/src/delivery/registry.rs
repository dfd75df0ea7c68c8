//! The providers of each channel, in the order they are tried.

use std::sync::Arc;

use crate::delivery::provider::{Channel, Provider};

/// Each channel's ordered provider list.
#[derive(Debug, Default, Clone)]
pub struct Providers {
    email: Vec<Arc<dyn Provider>>,
    sms: Vec<Arc<dyn Provider>>,
}

impl Providers {
    pub fn new(email: Vec<Arc<dyn Provider>>, sms: Vec<Arc<dyn Provider>>) -> Self {
        Providers { email, sms }
    }

    /// `channel`'s providers, first choice first.
    pub fn for_channel(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        match channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
        }
    }

    /// Every provider's name, each once.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .email
            .iter()
            .chain(&self.sms)
            .map(|p| p.name())
            .collect();
        names.dedup();
        names
    }
}
