//! A NOC-like subscriber that misses nothing across a broker restart.
//!
//! mosquitto_sub loses what is published while it is away. This one keeps a
//! persistent session (clean session off, QoS 1, fixed client id) on a broker
//! with persistence on, so that messages published while it reconnects are
//! queued for it by the broker, as a real NOC consumer's would be.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub json: serde_json::Value,
    pub payload: Vec<u8>,
}

pub struct Durable {
    messages: mpsc::Receiver<Received>,
    stop: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Durable {
    pub fn connect(port: u16, client_id: &str, filter: &str) -> Durable {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(5));
        // rumqttc's default of 10 KiB would refuse the agent's larger
        // messages (up to mqtt.max_message_bytes).
        options.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut connection) = Client::new(options, 64);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .expect("subscribe");
        let (tx, messages) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let (ready_tx, ready) = mpsc::channel::<()>();
        let filter = filter.to_string();
        let thread = thread::spawn(move || {
            for event in connection.iter() {
                if stopped.try_recv().is_ok() {
                    break;
                }
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let json =
                            serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                        let received = Received {
                            topic: p.topic.clone(),
                            json,
                            payload: p.payload.to_vec(),
                        };
                        if tx.send(received).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                        // A broker without our session (first connect): subscribe again.
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(_) => {}
                    // The broker is away: try again shortly, not in a tight loop.
                    Err(_) => thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        // Only a live subscription guarantees the agent's first messages are seen.
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("the durable subscriber's SUBSCRIBE was not acknowledged within 5 s");
        Durable {
            messages,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received until `done` holds for a message or `timeout` passes.
    pub fn until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Ok(message) = self
            .messages
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            // Every message the agent publishes must match its schema (docs/schemas/).
            crate::support::schema::assert_valid(&message.topic, &message.payload);
            let finished = done(&message);
            seen.push(message);
            if finished {
                break;
            }
        }
        seen
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        // The connection thread notices at its next event (keep-alive at worst); don't wait for it.
        drop(self.thread.take());
    }
}

/// The seqs of the agent's stream in arrival order (status has none).
pub fn seqs(messages: &[Received]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| m.json["seq"].as_u64())
        .collect()
}

/// Checks at-least-once, in-order delivery: after dropping repeats, the seqs
/// increase and every seq from the first to the last is there.
pub fn assert_complete_and_ordered(seqs: &[u64]) {
    let mut unique: Vec<u64> = Vec::new();
    for &seq in seqs {
        if unique.last().is_some_and(|&last| seq <= last) {
            // A repeat after a reconnect is allowed (at least once); an older unseen seq is not.
            assert!(
                unique.contains(&seq),
                "seq {seq} arrived out of order after {:?}",
                unique.last()
            );
            continue;
        }
        unique.push(seq);
    }
    let (Some(&first), Some(&last)) = (unique.first(), unique.last()) else {
        panic!("no seq received");
    };
    let missing: Vec<u64> = (first..=last)
        .filter(|s| unique.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "seqs missing between {first} and {last}: {missing:?}"
    );
}
