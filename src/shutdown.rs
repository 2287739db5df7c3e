//! The one shutdown signal every task obeys.
//!
//! As in tokio's mini-redis: the daemon holds the [`Trigger`]; every task gets
//! a [`Shutdown`] and selects on [`Shutdown::wait`] wherever it would block.
//! When the trigger fires, each task finishes or persists its in-flight work
//! and returns; the daemon waits for them, with a deadline, and exits.

use tokio::sync::watch;

/// Fires the shutdown; held by the daemon.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and receiver.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// True once the shutdown has been fired.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the shutdown fires (at once if it already has, or if
    /// the trigger is gone: a task must never outlive the daemon).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn every_receiver_sees_the_trigger() {
        let (trigger, shutdown) = channel();
        let mut a = shutdown.clone();
        let mut b = shutdown;
        assert!(!a.is_triggered());
        trigger.fire();
        a.wait().await;
        b.wait().await;
        assert!(b.is_triggered());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_trigger_releases_waiters() {
        let (trigger, mut shutdown) = channel();
        drop(trigger);
        shutdown.wait().await;
    }
}
