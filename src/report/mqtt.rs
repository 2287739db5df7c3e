//! One MQTT session, in either protocol version, behind one small API.
//!
//! rumqttc speaks MQTT 3.1.1 and 5 through two separate client types. The
//! reporter needs only a handful of things from either: connect, publish
//! with QoS 1, learn each publish's packet id and its PUBACK, disconnect. This
//! adapter turns both versions' events into [`Happening`]s and their errors
//! into sentences a technician can act on, so that delivery
//! (src/report/reporter.rs, src/report/delivery.rs) is written once.
//!
//! The event loop runs in a task of its own and hands its events over a
//! channel. rumqttc's `poll` is not cancel-safe while it connects: polled
//! inside a `select!` that another branch wins, a half-made connection would
//! be dropped without DISCONNECT, and the broker would publish the last will
//! of a perfectly healthy agent.

use rumqttc::v5;

use crate::config::{MqttConfig, MqttProtocol};

/// What the session reports, in either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    /// CONNACK; with MQTT 5, the broker's Maximum Packet Size if it set one.
    Connected {
        max_packet: Option<u32>,
    },
    /// A publish was written to the network with this packet id.
    PublishSent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    DisconnectSent,
    /// A message on a topic the session subscribed to.
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    Other,
}

/// The retained last will: topic and payload.
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
}

enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// One session: its client, and the task driving its event loop.
pub struct Session {
    client: Client,
    events: tokio::sync::mpsc::Receiver<Result<Happening, String>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The largest MQTT packet either way. Well above the largest push the agent
/// accepts (src/provision/bundle.rs), so that an oversize push reaches the
/// agent and is refused with an acknowledgement instead of breaking the
/// connection, and large enough for a diag result.
pub const MAX_PACKET: usize = 1024 * 1024;

/// Events the driver may get ahead of the reporter by.
const EVENT_BACKLOG: usize = 64;

impl Session {
    /// Prepares a session (the connection is made by the first [`Session::next`]).
    /// Fails only when the TLS files cannot be read.
    pub fn open(
        client_id: &str,
        mqtt: &MqttConfig,
        will: Will,
        capacity: usize,
    ) -> Result<Session, String> {
        let transport = transport(mqtt)?;
        let password = mqtt
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        let (tx, events) = tokio::sync::mpsc::channel(EVENT_BACKLOG);
        let (client, driver) = match mqtt.protocol {
            MqttProtocol::V311 => {
                let mut options =
                    rumqttc::MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
                options
                    .set_keep_alive(mqtt.keep_alive.get())
                    .set_clean_session(true)
                    .set_max_packet_size(MAX_PACKET, MAX_PACKET);
                if let Some(user) = &mqtt.username {
                    options.set_credentials(user.clone(), password);
                }
                options.set_last_will(rumqttc::LastWill::new(
                    will.topic,
                    will.payload,
                    rumqttc::QoS::AtLeastOnce,
                    true,
                ));
                if let Some(transport) = transport {
                    options.set_transport(transport);
                }
                let (client, eventloop) = rumqttc::AsyncClient::new(options, capacity);
                (Client::V311(client), drive(eventloop, tx))
            }
            MqttProtocol::V5 => {
                let mut options = v5::MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
                options
                    .set_keep_alive(mqtt.keep_alive.get())
                    .set_clean_start(true)
                    .set_max_packet_size(Some(MAX_PACKET as u32));
                if let Some(user) = &mqtt.username {
                    options.set_credentials(user.clone(), password);
                }
                options.set_last_will(v5::mqttbytes::v5::LastWill::new(
                    will.topic,
                    will.payload,
                    v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    None,
                ));
                if let Some(transport) = transport {
                    options.set_transport(transport);
                }
                let (client, eventloop) = v5::AsyncClient::new(options, capacity);
                (Client::V5(client), drive(eventloop, tx))
            }
        };
        Ok(Session {
            client,
            events,
            driver,
        })
    }

    /// The next thing that happened; an error ends the session. Cancel-safe.
    pub async fn next(&mut self) -> Result<Happening, String> {
        self.events
            .recv()
            .await
            .unwrap_or_else(|| Err("the MQTT session ended".into()))
    }

    /// Hands a QoS 1 publish to the client; fails when its request queue is full.
    pub fn try_publish(&self, topic: &str, retain: bool, payload: Vec<u8>) -> Result<(), String> {
        match &self.client {
            Client::V311(client) => client
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
            Client::V5(client) => client
                .try_publish(topic, v5::mqttbytes::QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
        }
    }

    /// Subscribes with QoS 1; fails when the client's request queue is full
    /// or the filter is not valid.
    pub fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match &self.client {
            Client::V311(client) => client
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(client) => client
                .try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn try_disconnect(&self) {
        let _ = match &self.client {
            Client::V311(client) => client.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(client) => client.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// Either version's event loop, as the driver task sees it.
trait EventSource: Send + 'static {
    fn next_happening(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Happening, String>> + Send;
}

impl EventSource for rumqttc::EventLoop {
    fn next_happening(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Happening, String>> + Send {
        next_v311(self)
    }
}

impl EventSource for v5::EventLoop {
    fn next_happening(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Happening, String>> + Send {
        next_v5(self)
    }
}

/// Runs an event loop in its own task until it fails or the session is dropped.
fn drive(
    mut source: impl EventSource,
    tx: tokio::sync::mpsc::Sender<Result<Happening, String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let event = source.next_happening().await;
            let ended = event.is_err();
            if tx.send(event).await.is_err() || ended {
                break;
            }
        }
    })
}

async fn next_v311(eventloop: &mut rumqttc::EventLoop) -> Result<Happening, String> {
    use rumqttc::{Event, Outgoing, Packet};
    Ok(
        match eventloop.poll().await.map_err(|e| describe_v311(&e))? {
            Event::Incoming(Packet::ConnAck(_)) => Happening::Connected { max_packet: None },
            Event::Incoming(Packet::PubAck(ack)) => Happening::Acked(ack.pkid),
            Event::Incoming(Packet::Publish(publish)) => Happening::Message {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
            },
            Event::Outgoing(Outgoing::Publish(pkid)) => Happening::PublishSent(pkid),
            Event::Outgoing(Outgoing::Disconnect) => Happening::DisconnectSent,
            _ => Happening::Other,
        },
    )
}

async fn next_v5(eventloop: &mut v5::EventLoop) -> Result<Happening, String> {
    use rumqttc::Outgoing;
    use v5::mqttbytes::v5::Packet;
    Ok(match eventloop.poll().await.map_err(|e| describe_v5(&e))? {
        v5::Event::Incoming(Packet::ConnAck(ack)) => Happening::Connected {
            max_packet: ack.properties.and_then(|p| p.max_packet_size),
        },
        v5::Event::Incoming(Packet::PubAck(ack)) => Happening::Acked(ack.pkid),
        v5::Event::Incoming(Packet::Publish(publish)) => Happening::Message {
            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
            payload: publish.payload.to_vec(),
        },
        v5::Event::Outgoing(Outgoing::Publish(pkid)) => Happening::PublishSent(pkid),
        v5::Event::Outgoing(Outgoing::Disconnect) => Happening::DisconnectSent,
        _ => Happening::Other,
    })
}

fn transport(mqtt: &MqttConfig) -> Result<Option<rumqttc::Transport>, String> {
    if !mqtt.tls.enabled {
        return Ok(None);
    }
    // A certificate chain or a key is a few KiB; 1 MiB leaves room for a
    // bundle of CAs.
    let read = |what: &str, path: &std::path::Path| {
        crate::files::read_bounded(path, 1024 * 1024)
            .map_err(|e| format!("cannot read mqtt.tls.{what} {}: {e}", path.display()))
    };
    let ca = match &mqtt.tls.ca_file {
        Some(path) => read("ca_file", path)?,
        None => return Err(
            "mqtt.tls.enabled needs mqtt.tls.ca_file (the CA that signs the broker's certificate)"
                .into(),
        ),
    };
    let client_auth = match (&mqtt.tls.cert_file, &mqtt.tls.key_file) {
        (Some(cert), Some(key)) => Some((read("cert_file", cert)?, read("key_file", key)?)),
        _ => None,
    };
    // rumqttc is built without a default crypto provider; ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Some(rumqttc::Transport::Tls(
        rumqttc::TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        },
    )))
}

const TLS_HINT: &str =
    "check mqtt.tls.ca_file, the client certificate's validity dates, and the system clock";

fn describe_io(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("{io} (is the broker running, and is mqtt.port right?)")
        }
        // A broker that rejects our client certificate closes the TLS session.
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::InvalidData => {
            format!("{io} (if TLS is on, the broker may have rejected the client certificate: {TLS_HINT})")
        }
        _ => io.to_string(),
    }
}

/// TLS alerts from the broker arrive wrapped in rumqttc's state errors; say
/// what they mean for the gateway's configuration.
fn tls_alert_hint(text: &str) -> Option<String> {
    let advice = if text.contains("CertificateExpired") {
        "the broker rejected the client certificate: it has expired (renew mqtt.tls.cert_file; check the system clock)"
    } else if text.contains("CertificateRequired") {
        "the broker requires a client certificate: set mqtt.tls.cert_file and mqtt.tls.key_file"
    } else if text.contains("UnknownCA")
        || text.contains("BadCertificate")
        || text.contains("CertificateUnknown")
    {
        "the broker rejected the client certificate: it is not signed by a CA the broker trusts (check mqtt.tls.cert_file)"
    } else if text.contains("DecryptError") || text.contains("HandshakeFailure") {
        "the TLS handshake failed: check that mqtt.tls.cert_file and mqtt.tls.key_file belong together"
    } else {
        return None;
    };
    Some(format!("{advice} [{text}]"))
}

/// A CONNACK refusal, in either version's reason codes.
fn refused(code: &dyn std::fmt::Debug) -> String {
    format!("the broker refused the connection ({code:?}): check mqtt.username, mqtt.password and that the agent id may connect")
}

fn describe_v311(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::ConnectionError as E;
    if let Some(hint) = tls_alert_hint(&e.to_string()) {
        return hint;
    }
    match e {
        E::ConnectionRefused(code) => refused(code),
        E::Tls(tls) => format!("TLS failed: {tls} ({TLS_HINT})"),
        E::Io(io) => describe_io(io),
        other => other.to_string(),
    }
}

fn describe_v5(e: &v5::ConnectionError) -> String {
    use v5::ConnectionError as E;
    if let Some(hint) = tls_alert_hint(&e.to_string()) {
        return hint;
    }
    match e {
        E::ConnectionRefused(code) => refused(code),
        E::Tls(tls) => format!("TLS failed: {tls} ({TLS_HINT})"),
        E::Io(io) => describe_io(io),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_a_readable_ca_and_says_so() {
        let mut mqtt = MqttConfig::default();
        mqtt.tls.enabled = true;
        let e = transport(&mqtt).err().unwrap_or_default();
        assert!(e.contains("mqtt.tls.ca_file"), "{e}");
        mqtt.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let e = transport(&mqtt).err().unwrap_or_default();
        assert!(
            e.contains("cannot read mqtt.tls.ca_file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn refused_connections_say_what_to_check() {
        let e = describe_v311(&rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::NotAuthorized,
        ));
        assert!(e.contains("mqtt.password"), "{e}");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(describe_v311(&rumqttc::ConnectionError::Io(io)).contains("mqtt.port"));
    }
}
