//! [`ClientConfig`]: where the channel is, and how long a call may take.

use std::path::PathBuf;
use std::time::Duration;

use super::error::ClientError;

/// Where a [`Client`](super::Client) finds the producer, and its budgets.
///
/// ```
/// use std::time::Duration;
/// use shmbridge::client::ClientConfig;
///
/// let config = ClientConfig::new("shared_memory_dir", "orders")
///     .call_timeout(Duration::from_secs(2))
///     .slot_wait(Duration::from_millis(500));
/// assert_eq!(config.channel_path(), std::path::Path::new("shared_memory_dir/orders.shm"));
/// assert_eq!(config.socket_path(), std::path::Path::new("shared_memory_dir/orders.sock"));
/// assert_eq!(config.quarantine_delay(), Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Directory holding the channel file and the signal socket.
    pub dir: PathBuf,
    /// Channel name: the files are `{dir}/{channel}.shm` and `{dir}/{channel}.sock`.
    pub channel: String,
    /// Time allowed for one call to the producer (connecting, the handler's work and
    /// its answer); the producer is told the budget and skips a write it could only
    /// start later. Default 10 s.
    pub call_timeout: Duration,
    /// Time a call may wait for a free request slot. Default 5 s.
    pub slot_wait: Duration,
    /// Longest a slot whose call failed while the producer may still write stays out
    /// of use; `None`: twice [`call_timeout`](Self::call_timeout).
    pub quarantine: Option<Duration>,
    /// Idle signal connections kept for reuse. Default 64.
    pub max_idle_connections: usize,
    /// How long a lone call polls the socket for its answer before it waits on the
    /// runtime (saves waking an idle CPU on virtual machines). Default 0: never.
    pub spin: Duration,
}

/// The defaults of [`ClientConfig::new`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`ClientConfig::slot_wait`].
pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(5);
/// See [`ClientConfig::max_idle_connections`].
pub const DEFAULT_MAX_IDLE_CONNECTIONS: usize = 64;

impl ClientConfig {
    /// The channel `channel` in `dir`, with the default budgets.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>, channel: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            channel: channel.into(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            slot_wait: DEFAULT_SLOT_WAIT,
            quarantine: None,
            max_idle_connections: DEFAULT_MAX_IDLE_CONNECTIONS,
            spin: Duration::ZERO,
        }
    }

    /// Sets [`call_timeout`](Self::call_timeout).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets [`slot_wait`](Self::slot_wait).
    #[must_use]
    pub fn slot_wait(mut self, wait: Duration) -> Self {
        self.slot_wait = wait;
        self
    }

    /// Sets [`quarantine`](Self::quarantine).
    #[must_use]
    pub fn quarantine(mut self, delay: Duration) -> Self {
        self.quarantine = Some(delay);
        self
    }

    /// Sets [`max_idle_connections`](Self::max_idle_connections).
    #[must_use]
    pub fn max_idle_connections(mut self, count: usize) -> Self {
        self.max_idle_connections = count;
        self
    }

    /// Sets [`spin`](Self::spin).
    #[must_use]
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// `{dir}/{channel}.shm`.
    #[must_use]
    pub fn channel_path(&self) -> PathBuf {
        self.dir.join(crate::channel_file_name(&self.channel))
    }

    /// `{dir}/{channel}.sock`: the producer's signal socket.
    #[must_use]
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(crate::socket_file_name(&self.channel))
    }

    /// The quarantine's longest delay: [`quarantine`](Self::quarantine), or twice the
    /// call timeout.
    #[must_use]
    pub fn quarantine_delay(&self) -> Duration {
        self.quarantine.unwrap_or(self.call_timeout.saturating_mul(2))
    }

    /// Checks the values a client cannot work with.
    pub(crate) fn check(&self) -> Result<(), ClientError> {
        let invalid = |why: String| Err(ClientError::InvalidConfig(why));
        if self.channel.is_empty() || self.channel.contains(['/', '\0']) || self.channel.starts_with('.') {
            return invalid(format!(
                "channel name {:?} must be non-empty, without '/' or NUL, and not start with '.'",
                self.channel
            ));
        }
        if self.call_timeout.is_zero() {
            return invalid("the call timeout must be above zero".into());
        }
        if u32::try_from(self.call_timeout.as_millis()).is_err() {
            return invalid(format!("the call timeout of {:?} is longer than the wire carries", self.call_timeout));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_configurations_are_refused() {
        assert!(ClientConfig::new("d", "orders").check().is_ok());
        for channel in ["", "a/b", ".hidden", "nul\0"] {
            let error = ClientConfig::new("d", channel).check().unwrap_err();
            assert!(matches!(error, ClientError::InvalidConfig(_)), "{channel:?}: {error}");
        }
        let zero = ClientConfig::new("d", "orders").call_timeout(Duration::ZERO).check().unwrap_err();
        assert!(zero.to_string().contains("above zero"), "{zero}");
        let huge = ClientConfig::new("d", "orders").call_timeout(Duration::from_secs(1 << 40)).check().unwrap_err();
        assert!(huge.to_string().contains("longer than the wire carries"), "{huge}");
    }
}
