//! Provisioning: provider-pushed configuration, applied all or nothing, and
//! signed remote commands.
//!
//! This task owns the running config. It is the config file with the agent
//! settings of the applied bundle laid over it (src/config.rs,
//! `load_with_overlay`), and it changes only here: on SIGHUP (the file was
//! edited) and when a push is applied or rolled back. Every other task reads
//! it from the `watch` channel.
//!
//! A push goes through fixed steps, each acknowledged on
//! `{prefix}/config/ack/{version}` (docs/provisioning.md has the state
//! machine):
//!
//! 1. **validate**: signature, target, expiry, version (src/provision/bundle.rs),
//!    then meaning: the merged config passes the file's checks, every device is
//!    known and has a credential to write with. A dry run stops here and
//!    answers with the difference.
//! 2. **read**: the current value of every OID the push sets, kept for rollback.
//! 3. **stage**: the journal (src/provision/journal.rs) gets the bundle and the
//!    kept values, atomically. From here a crash is recoverable.
//! 4. **apply**: the new running config, then the SETs in order.
//! 5. **verify**: every OID read back; new MQTT settings must be accepted by
//!    the broker within `provisioning.verify_timeout`.
//! 6. **commit**: `state.json` names the new version (the commit point),
//!    then the journal is removed.
//!
//! A failure at any step undoes what was done: the kept values are SET back
//! (newest first), the old config is restored, and the push is acknowledged
//! `rolled_back` with the step. After a crash the journal decides: a push
//! whose version `state.json` already names is finished (`applied`); any
//! other is undone (`rolled_back`). The config the agent starts with is built
//! from `state.json`, so an uncommitted push's agent settings are never in
//! effect after a restart.
//!
//! Every acknowledgement, the retained state and command results go through
//! the report queue like device reports: they survive broker outages and
//! restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::bundle::{self, Bundle, CommandKind, Rejection, Trust};
use super::journal::{self, Applied, HistoryEntry, Journal, Kept, RanCommand, State, Store};
use crate::collect;
use crate::config::{self, Config, Credential};
use crate::discover;
use crate::message::{
    AckStatus, CommandResult, CommandStatus, ConfigAck, ConfigState, Device, Inbound, LinkState,
    Report,
};
use crate::report::contract::Contract;
use crate::report::status_file;
use crate::shutdown::Shutdown;
use crate::snmp::{Client, Oid, SetValue, Timing};

/// The test hook: `CPE_AGENT_TEST_KILL_AT=<step>` makes the agent kill
/// itself with SIGKILL when an apply reaches that step (see [`STEPS`]).
pub const KILL_AT_ENV: &str = "CPE_AGENT_TEST_KILL_AT";

/// The points of an apply where the test hook can kill the agent.
pub const STEPS: [&str; 7] = [
    "validated",
    "read",
    "staged",
    "applied_agent",
    "applied_device",
    "verified",
    "committed",
];

/// What the task needs from the rest of the daemon.
pub struct Wiring {
    pub config_tx: watch::Sender<Arc<Config>>,
    pub reports: mpsc::Sender<Report>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub link: watch::Receiver<LinkState>,
    pub polling: mpsc::Sender<collect::Request>,
    pub rediscover: Arc<Notify>,
    /// Fired on SIGHUP.
    pub reload: Arc<Notify>,
}

/// The config to start with: the file, with the applied bundle's agent
/// settings over it. A bundle that no longer fits the file is logged and
/// left out (the file alone runs), rather than keeping the agent down.
pub fn startup_config(path: &Path) -> anyhow::Result<Config> {
    let file = discover::load_config(path, None)?;
    let store = Store::new(&file.storage.state_dir);
    let state = match store.state() {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("{e}; running with the config file alone");
            return Ok(file);
        }
    };
    match effective(path, state.applied.as_ref()) {
        Ok(config) => Ok(config),
        Err(e) => {
            tracing::error!(error = %e, "the applied bundle's settings do not fit the config file; running with the file alone");
            Ok(file)
        }
    }
}

/// The file with an applied bundle's settings laid over it.
fn effective(path: &Path, applied: Option<&Applied>) -> Result<Config, String> {
    let Some(applied) = applied else {
        return discover::load_config(path, None).map_err(|e| e.to_string());
    };
    let bundle = decode_applied(applied)?;
    with_bundle(path, &bundle)
}

fn with_bundle(path: &Path, bundle: &Bundle) -> Result<Config, String> {
    let mut config =
        discover::load_config(path, bundle.desired.agent.as_ref()).map_err(|e| e.to_string())?;
    config.pushed_version = Some(bundle.version);
    Ok(config)
}

fn decode_applied(applied: &Applied) -> Result<Bundle, String> {
    let bytes = BASE64
        .decode(applied.bundle.as_bytes())
        .map_err(|e| format!("the applied bundle is not base64: {e}"))?;
    bundle::check_bundle(&bytes).map_err(|r| format!("the applied bundle: {}", r.reason()))
}

/// Runs until shutdown.
pub async fn run(path: PathBuf, agent_id: String, wiring: Wiring, mut shutdown: Shutdown) {
    let Wiring {
        config_tx,
        reports,
        mut inbound,
        link,
        polling,
        rediscover,
        reload,
    } = wiring;
    let store = Store::new(&config_tx.borrow().storage.state_dir);
    let state = store.state().unwrap_or_else(|e| {
        tracing::error!("{e}");
        State::default()
    });
    let mut provisioner = Provisioner {
        path,
        agent_id,
        config_tx,
        reports,
        link,
        polling,
        rediscover,
        store,
        state,
        version_floor: None,
    };
    provisioner.recover().await;
    // With no state of its own (first start, or the state directory lost),
    // the agent leaves the broker's retained state alone: it reads it back
    // for the version floor.
    if provisioner.state.applied_version().is_some() || provisioner.state.status.is_some() {
        provisioner.publish_state(None);
    }
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = reload.notified() => provisioner.reload(),
            message = inbound.recv() => match message {
                Some(message) => provisioner.handle(message).await,
                None => break,
            },
        }
    }
    tracing::debug!("provisioning stopped");
}

struct Provisioner {
    path: PathBuf,
    agent_id: String,
    config_tx: watch::Sender<Arc<Config>>,
    reports: mpsc::Sender<Report>,
    link: watch::Receiver<LinkState>,
    polling: mpsc::Sender<collect::Request>,
    rediscover: Arc<Notify>,
    store: Store,
    state: State,
    /// A version read back from the agent's own retained config state that
    /// the journal does not know (see `restore_floor`).
    version_floor: Option<u64>,
}

/// A step that failed: which, and why.
struct Failure {
    step: &'static str,
    reason: String,
}

fn failed(step: &'static str) -> impl Fn(String) -> Failure {
    move |reason| Failure { step, reason }
}

/// One device a push sets values on.
struct Target {
    device_id: String,
    address: std::net::SocketAddr,
    credential: Credential,
    sets: Vec<(Oid, SetValue)>,
}

impl Provisioner {
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config_tx.borrow())
    }

    fn contract(&self) -> Contract {
        Contract::new(&self.agent_id, &self.config().mqtt)
    }

    fn trust(&self) -> Trust {
        let config = self.config();
        let mut trust = Trust::new(&self.agent_id, &config.provisioning.verifying_keys());
        trust.groups = config.provisioning.groups.clone();
        trust.applied_version = self.state.applied_version().max(self.version_floor);
        trust.nonce = Some(crate::identity::boot_nonce().to_string());
        trust
    }

    fn send(&self, report: Report) {
        if let Err(e) = self.reports.try_send(report) {
            tracing::error!(
                kind = e.into_inner().kind(),
                "cannot hand a provisioning answer to the reporter (it is far behind)"
            );
        }
    }

    fn ack(&self, ack: ConfigAck) {
        tracing::info!(version = ?ack.version, status = ack.status.as_str(), step = ?ack.step, reason = ?ack.reason, "config push");
        self.send(Report::ConfigAck(ack));
    }

    /// The retained state; `status` overrides the stored outcome (for "applying").
    fn publish_state(&self, status: Option<&str>) {
        self.send(Report::ConfigState(ConfigState {
            version: self.state.applied_version().max(self.version_floor),
            status: status
                .map(str::to_string)
                .or_else(|| self.state.status.clone())
                .unwrap_or_else(|| "none".into()),
            last_error: self.state.last_error.clone(),
        }));
    }

    /// The agent's own retained config state, read back at connect: a
    /// version above what the journal says applied (the state directory was
    /// lost: a factory reset, new flash) becomes the floor a push must beat,
    /// so a captured old push cannot be applied again.
    fn restore_floor(&mut self, payload: &[u8]) {
        let version = serde_json::from_slice::<Json>(payload)
            .ok()
            .and_then(|state| state["version"].as_u64());
        let Some(version) = version else { return };
        let applied = self.state.applied_version();
        if Some(version) > applied.max(self.version_floor) {
            tracing::warn!(
                version,
                applied = ?applied,
                "the retained config state names a version this agent has no record of (its state was lost?): pushes must be above it"
            );
            self.version_floor = Some(version);
        }
    }

    /// Records how a push ended, on disk and on the retained state.
    fn record(&mut self, version: Option<u64>, status: AckStatus, reason: Option<String>) {
        self.state.record(HistoryEntry {
            version,
            status: status.as_str().into(),
            reason,
            at: status_file::unix_now(),
        });
        if let Err(e) = self.store.write_state(&self.state) {
            tracing::error!("{e}");
        }
        self.publish_state(None);
    }

    /// SIGHUP: the file again, with the applied bundle over it; a broken
    /// file is refused and the running config stays.
    fn reload(&mut self) {
        let loaded = effective(&self.path, self.state.applied.as_ref());
        match loaded {
            Ok(new) => {
                let new_id = crate::identity::agent_id(new.agent.id.as_deref()).unwrap_or_default();
                if new_id != self.agent_id {
                    tracing::error!("config reload refused: agent.id cannot change while running (restart the agent); keeping the running config");
                    status_file::record_config_reload(Some(
                        "agent.id cannot change while running".into(),
                    ));
                    return;
                }
                if *self.config() == new {
                    tracing::info!("config reloaded: no changes");
                    return;
                }
                self.config_tx.send_replace(Arc::new(new));
                status_file::record_config_reload(None);
                tracing::info!("config reloaded");
            }
            Err(e) => {
                tracing::error!("config reload refused: {e}; keeping the running config");
                status_file::record_config_reload(Some(e));
            }
        }
    }

    async fn handle(&mut self, message: Inbound) {
        if !self.config().provisioning.enabled {
            tracing::warn!(topic = %message.topic, "a provisioning message arrived while provisioning is off; ignored");
            return;
        }
        let contract = self.contract();
        if message.topic == contract.config_state_topic() {
            return self.restore_floor(&message.payload);
        }
        if let Some(request_id) = contract.command_request_id(&message.topic) {
            let request_id = request_id.to_string();
            self.command(&request_id, &message.payload).await;
        } else {
            self.push(&message.payload).await;
        }
    }

    // ----- pushes -----

    async fn push(&mut self, message: &[u8]) {
        let claimed = bundle::peek_version(message);
        self.ack(ConfigAck::new(claimed, AckStatus::Received));
        let bundle = match bundle::verify(message, &self.trust(), SystemTime::now()) {
            Ok(bundle) => bundle,
            Err(rejection) => return self.refused(claimed, message, rejection),
        };
        let version = Some(bundle.version);
        let (new_config, targets) = match self.validate(&bundle).await {
            Ok(valid) => valid,
            Err(Refusal { code, reason }) => {
                return self.reject(
                    version,
                    code,
                    format!("{}: {reason}", code.replace('_', " ")),
                );
            }
        };
        if bundle.dry_run {
            let mut ack = ConfigAck::new(version, AckStatus::DryRun);
            ack.diff = Some(diff(&self.config(), &new_config, &targets));
            self.ack(ack);
            return self.record(version, AckStatus::DryRun, None);
        }
        let mut journal = Journal {
            version: bundle.version,
            key_id: bundle.key_id.clone(),
            bundle: BASE64.encode(&bundle.bytes),
            step: "validated".into(),
            kept: Vec::new(),
            attempted: 0,
            started_at: status_file::unix_now(),
        };
        if let Err(e) = self.store.write_journal(&journal) {
            return self.reject(version, "storage", format!("cannot stage the push: {e}"));
        }
        checkpoint("validated");
        self.ack(ConfigAck::new(version, AckStatus::Applying));
        self.publish_state(Some("applying"));
        let old_config = self.config();
        let outcome = self
            .apply(&bundle, &mut journal, new_config, &targets)
            .await;
        match outcome {
            Ok(()) => {
                tracing::info!(version = bundle.version, "config push applied");
                self.ack(ConfigAck::new(version, AckStatus::Applied));
                self.publish_state(None);
            }
            Err(failure) => self.roll_back(&journal, old_config, failure).await,
        }
    }

    /// A refused message; the same bundle again is acknowledged as applied.
    fn refused(&mut self, claimed: Option<u64>, message: &[u8], rejection: Rejection) {
        if let Rejection::Replay { version, applied } = rejection {
            if version == applied && self.is_applied(message) {
                let mut ack = ConfigAck::new(Some(version), AckStatus::Applied);
                ack.reason = Some(format!("version {version} is already applied"));
                return self.ack(ack);
            }
        }
        let version = match &rejection {
            Rejection::Replay { version, .. } => Some(*version),
            _ => claimed,
        };
        self.reject(version, rejection.code(), rejection.reason());
    }

    fn is_applied(&self, message: &[u8]) -> bool {
        let Some(applied) = &self.state.applied else {
            return false;
        };
        let keys = self.trust().keys;
        bundle::authenticate(message, &keys, usize::MAX)
            .is_ok_and(|b| BASE64.encode(&b.bytes) == applied.bundle)
    }

    fn reject(&mut self, version: Option<u64>, code: &str, reason: String) {
        let mut ack = ConfigAck::new(version, AckStatus::Rejected);
        ack.code = Some(code.into());
        ack.reason = Some(reason.clone());
        self.ack(ack);
        self.record(version, AckStatus::Rejected, Some(reason));
    }

    /// Step 1, meaning: the merged config and the devices, each read back
    /// to be the device the push names.
    async fn validate(&self, bundle: &Bundle) -> Result<(Config, Vec<Target>), Refusal> {
        let new_config = with_bundle(&self.path, bundle).map_err(Refusal::invalid)?;
        let mut targets = Vec::new();
        for (device_id, sets) in &bundle.desired.devices {
            let device = self.lookup(device_id).await.ok_or_else(|| {
                Refusal::invalid(format!("desired.devices.{device_id}: no device with this id is known to the agent (see its inventory topics)"))
            })?;
            let credential = write_credential(&new_config, &device).map_err(|mut r| {
                r.reason = format!("desired.devices.{device_id}: {}", r.reason);
                r
            })?;
            self.same_device(&device).await.map_err(|why| Refusal {
                code: "identity_changed",
                reason: format!("desired.devices.{device_id}: {why}; nothing was written"),
            })?;
            let sets = sets
                .iter()
                .map(|set| {
                    set.oid
                        .parse::<Oid>()
                        .map(|oid| (oid, set.value.clone()))
                        .map_err(|e| format!("desired.devices.{device_id}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(Refusal::invalid)?;
            targets.push(Target {
                device_id: device_id.clone(),
                address: device.socket_addr(),
                credential,
                sets,
            });
        }
        Ok((new_config, targets))
    }

    /// Reads the device at the known address afresh and checks that it is
    /// still the one the agent knows by this id: the same id, sysObjectID and
    /// lowest MAC. A device replaced at that address, or one that answers
    /// differently now, gets no SET.
    async fn same_device(&self, known: &Device) -> Result<(), String> {
        let address = known.socket_addr();
        let fresh = discover::reprobe(&self.config(), address, &known.credential)
            .await
            .ok_or_else(|| format!("{address} did not answer when read back before the write"))?;
        let lowest_mac = |d: &Device| {
            d.inventory
                .interfaces
                .iter()
                .filter_map(|i| i.mac.clone())
                .min()
        };
        // The id it claims: a device tracked under another (a collision)
        // still claims the one it did.
        let claimed = known.claimed_id.as_ref().unwrap_or(&known.id);
        let checks = [
            ("device id", Some(claimed.clone()), Some(fresh.id.clone())),
            (
                "sysObjectID",
                known.inventory.system.sys_object_id.clone(),
                fresh.inventory.system.sys_object_id.clone(),
            ),
            ("lowest MAC", lowest_mac(known), lowest_mac(&fresh)),
        ];
        for (what, was, now) in checks {
            if was != now {
                return Err(format!(
                    "the device at {address} is not the one the push names: its {what} is now {} (was {})",
                    now.as_deref().unwrap_or("absent"),
                    was.as_deref().unwrap_or("absent")
                ));
            }
        }
        Ok(())
    }

    async fn lookup(&self, device_id: &str) -> Option<Device> {
        let (reply, answer) = oneshot::channel();
        let request = collect::Request::Lookup {
            device_id: device_id.to_string(),
            reply,
        };
        self.polling.send(request).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Steps 2 to 6.
    async fn apply(
        &mut self,
        bundle: &Bundle,
        journal: &mut Journal,
        new_config: Config,
        targets: &[Target],
    ) -> Result<(), Failure> {
        let timing = self.timing();
        // 2. read
        journal.kept = read_current(targets, timing)
            .await
            .map_err(failed("read"))?;
        checkpoint("read");
        // 3. stage
        journal.step = "staged".into();
        self.store.write_journal(journal).map_err(failed("stage"))?;
        checkpoint("staged");
        // 4. apply: agent settings, then devices
        let old_config = self.config();
        let mqtt_changed = old_config.mqtt != new_config.mqtt;
        let new_mqtt = new_config.mqtt.clone();
        if *old_config != new_config {
            self.config_tx.send_replace(Arc::new(new_config));
        }
        checkpoint("applied_agent");
        journal.step = "applying".into();
        for target in targets {
            let mut client = Client::new(target.address, target.credential.clone(), timing);
            for (oid, value) in &target.sets {
                // Journaled first: after a crash, everything attempted is undone.
                journal.attempted += 1;
                self.store.write_journal(journal).map_err(failed("apply"))?;
                let set = client.set(&[(oid.clone(), value.clone())]).await;
                if let Err(e) = set {
                    // An agent that answers with an error applied none of the PDU.
                    if matches!(e, crate::snmp::SnmpError::ErrorStatus { .. }) {
                        journal.attempted -= 1;
                    }
                    return Err(Failure {
                        step: "apply",
                        reason: format!(
                            "SET {oid} on {}: {}",
                            target.device_id,
                            describe_set_error(&e)
                        ),
                    });
                }
                checkpoint("applied_device");
            }
        }
        journal.step = "applied".into();
        self.store.write_journal(journal).map_err(failed("apply"))?;
        // 5. verify
        verify_devices(targets, timing)
            .await
            .map_err(failed("verify"))?;
        if mqtt_changed {
            self.verify_broker(&new_mqtt)
                .await
                .map_err(failed("verify"))?;
        }
        journal.step = "verified".into();
        checkpoint("verified");
        // 6. commit
        let previous = self.state.clone();
        self.state.applied = Some(Applied {
            version: bundle.version,
            key_id: bundle.key_id.clone(),
            bundle: BASE64.encode(&bundle.bytes),
            applied_at: status_file::unix_now(),
        });
        self.state.record(HistoryEntry {
            version: Some(bundle.version),
            status: AckStatus::Applied.as_str().into(),
            reason: None,
            at: status_file::unix_now(),
        });
        if let Err(e) = self.store.write_state(&self.state) {
            self.state = previous;
            return Err(Failure {
                step: "commit",
                reason: e,
            });
        }
        checkpoint("committed");
        if let Err(e) = self.store.remove_journal() {
            tracing::error!("{e}");
        }
        Ok(())
    }

    /// The broker must accept the new MQTT settings within the verify timeout.
    async fn verify_broker(&mut self, settings: &config::MqttConfig) -> Result<(), String> {
        let timeout = self.config().provisioning.verify_timeout.get();
        let accepted = tokio::time::timeout(
            timeout,
            self.link
                .wait_for(|s| s.connected && s.settings.as_ref() == Some(settings)),
        )
        .await
        .map(|waited| waited.map(|_| ()));
        match accepted {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the reporter stopped".into()),
            Err(_) => {
                let last = self.link.borrow().error.clone();
                Err(format!(
                    "the broker did not accept the new MQTT settings within {}{}",
                    humantime::format_duration(timeout),
                    last.map(|e| format!(": {e}")).unwrap_or_default()
                ))
            }
        }
    }

    fn timing(&self) -> Timing {
        let config = self.config();
        Timing {
            timeout: config.polling.timeout.get(),
            retries: config.polling.retries,
        }
    }

    /// Undoes a failed push: devices back to their kept values (newest first),
    /// the old config back in effect; acknowledged `rolled_back`.
    async fn roll_back(&mut self, journal: &Journal, old_config: Arc<Config>, failure: Failure) {
        let problems = self.restore_devices(attempted(journal)).await;
        if *self.config() != *old_config {
            self.config_tx.send_replace(old_config);
        }
        let mut reason = failure.reason;
        if !problems.is_empty() {
            reason = format!(
                "{reason}; the rollback could not restore: {}",
                problems.join("; ")
            );
        }
        self.finish_rolled_back(journal.version, failure.step, reason);
    }

    fn finish_rolled_back(&mut self, version: u64, step: &str, reason: String) {
        if let Err(e) = self.store.remove_journal() {
            tracing::error!("{e}");
        }
        let mut ack = ConfigAck::new(Some(version), AckStatus::RolledBack);
        ack.step = Some(step.to_string());
        ack.reason = Some(reason.clone());
        self.ack(ack);
        self.record(
            Some(version),
            AckStatus::RolledBack,
            Some(format!("{step}: {reason}")),
        );
    }

    /// SETs the kept values back, newest first; what could not be restored.
    async fn restore_devices(&self, kept: &[Kept]) -> Vec<String> {
        let config = self.config();
        let timing = self.timing();
        let mut problems = Vec::new();
        for value in kept.iter().rev() {
            let Some(credential) = config
                .credentials_or_default()
                .into_iter()
                .find(|c| c.name == value.credential)
            else {
                problems.push(format!(
                    "{} on {}: the credential {:?} is no longer configured",
                    value.oid, value.device_id, value.credential
                ));
                continue;
            };
            let restored = match (
                value.oid.parse::<Oid>(),
                bundle::parse_set_value(&value.kind, &value.value),
            ) {
                (Ok(oid), Ok(set)) => {
                    let mut client = Client::new(value.address, credential, timing);
                    client
                        .set(&[(oid, set)])
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            if let Err(e) = restored {
                problems.push(format!("{} on {}: {e}", value.oid, value.device_id));
            }
        }
        problems
    }

    /// After a restart: finish a committed push, undo any other.
    async fn recover(&mut self) {
        let journal = match self.store.journal() {
            Ok(Some(journal)) => journal,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        if self.state.applied_version() == Some(journal.version) {
            tracing::info!(
                version = journal.version,
                "the push committed before the restart is in effect"
            );
            if let Err(e) = self.store.remove_journal() {
                tracing::error!("{e}");
            }
            let mut ack = ConfigAck::new(Some(journal.version), AckStatus::Applied);
            ack.reason = Some("committed before the agent restarted; in effect".into());
            return self.ack(ack);
        }
        tracing::warn!(version = journal.version, step = %journal.step, "the agent stopped in the middle of a push; undoing it");
        let problems = self.restore_devices(attempted(&journal)).await;
        let mut reason = format!(
            "the agent stopped during step {:?} before the push was committed; the previous config is in effect",
            journal.step
        );
        if !problems.is_empty() {
            reason = format!(
                "{reason}; the rollback could not restore: {}",
                problems.join("; ")
            );
        }
        let step = journal.step.clone();
        self.finish_rolled_back(journal.version, &step, reason);
    }

    // ----- commands -----

    async fn command(&mut self, request_id: &str, message: &[u8]) {
        let now = SystemTime::now();
        let mut ran = self.store.commands().unwrap_or_else(|e| {
            tracing::error!("{e}");
            Vec::new()
        });
        let now_s = status_file::unix_now();
        ran.retain(|c| c.not_after >= now_s);
        let ids: Vec<String> = ran.iter().map(|c| c.request_id.clone()).collect();
        let command = match bundle::verify_command(message, request_id, &self.trust(), &ids, now) {
            Ok(command) => command,
            Err(rejection) => {
                tracing::warn!(request_id, reason = %rejection, "command refused");
                return self.send(Report::CommandResult(CommandResult {
                    request_id: request_id.to_string(),
                    command: None,
                    status: CommandStatus::Rejected,
                    code: Some(rejection.code().into()),
                    reason: Some(rejection.reason()),
                    result: None,
                }));
            }
        };
        // Remembered before running: a crash mid-command must not let it run twice.
        ran.push(RanCommand {
            request_id: command.request_id.clone(),
            not_after: command
                .not_after
                .1
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        let excess = ran.len().saturating_sub(journal::COMMANDS_LEN);
        ran.drain(..excess);
        if let Err(e) = self.store.write_commands(&ran) {
            tracing::error!("{e}");
        }
        tracing::info!(
            request_id,
            command = command.kind.name(),
            "running a remote command"
        );
        let outcome = self.run_command(&command.kind).await;
        let (status, reason, result) = match outcome {
            Ok(result) => (CommandStatus::Ok, None, Some(result)),
            Err(reason) => (CommandStatus::Failed, Some(reason), None),
        };
        self.send(Report::CommandResult(CommandResult {
            request_id: command.request_id,
            command: Some(command.kind.name().into()),
            status,
            code: None,
            reason,
            result,
        }));
    }

    async fn run_command(&self, kind: &CommandKind) -> Result<Json, String> {
        match kind {
            CommandKind::Rediscover => {
                self.rediscover.notify_one();
                Ok(json!({ "sweep": "started" }))
            }
            CommandKind::PollNow { device } => {
                let (reply, answer) = oneshot::channel();
                let request = collect::Request::PollNow {
                    device_id: device.clone(),
                    reply,
                };
                self.polling
                    .send(request)
                    .await
                    .map_err(|_| "the poller is not running".to_string())?;
                let polls = answer
                    .await
                    .map_err(|_| "the poller is not running".to_string())??;
                Ok(json!({ "polls_started": polls }))
            }
            CommandKind::Diag => {
                let options = crate::ops::diag::Options {
                    config_path: self.path.clone(),
                    json: true,
                    timeout: Duration::from_secs(20),
                    sweep: false,
                };
                Ok(crate::ops::diag::checks_json(&options).await)
            }
            CommandKind::RebootDevice { device } => {
                let found = self
                    .lookup(device)
                    .await
                    .ok_or_else(|| format!("no device with id {device:?} is known to the agent"))?;
                let config = self.config();
                let credential = write_credential(&config, &found).map_err(|r| r.reason)?;
                self.same_device(&found).await?;
                reboot(found.socket_addr(), credential, self.timing()).await
            }
        }
    }
}

/// The kept values of the SETs a journal says were attempted.
fn attempted(journal: &Journal) -> &[Kept] {
    let n = (journal.attempted as usize).min(journal.kept.len());
    journal.kept.get(..n).unwrap_or_default()
}

/// SNMP error-status codes a SET meets, in words (RFC 3416).
fn describe_set_error(e: &crate::snmp::SnmpError) -> String {
    let crate::snmp::SnmpError::ErrorStatus { status, .. } = e else {
        return e.to_string();
    };
    let name = match status {
        2 => "noSuchName: the object does not exist (SNMPv1)",
        3 => "badValue",
        4 => "readOnly",
        6 => "noAccess: the credential may not write this object",
        7 => "wrongType: the type does not match the object's",
        8 => "wrongLength",
        10 => "wrongValue: the device refuses this value",
        11 => "noCreation: the object does not exist",
        12 => "inconsistentValue",
        13 => "resourceUnavailable",
        14 => "commitFailed",
        15 => "undoFailed",
        16 => "authorizationError: the credential may not write",
        17 => "notWritable: the object is read-only",
        18 => "inconsistentName",
        _ => "error",
    };
    format!("the device answered {name} (error-status {status})")
}

/// The kill -9 test hook (see [`KILL_AT_ENV`]).
fn checkpoint(step: &str) {
    if std::env::var(KILL_AT_ENV).is_ok_and(|at| at == step) {
        tracing::warn!(step, "test hook: killing the agent with SIGKILL");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Why a push is refused at validation: the ack's code and the reason.
#[derive(Debug)]
struct Refusal {
    code: &'static str,
    reason: String,
}

impl Refusal {
    fn invalid(reason: String) -> Refusal {
        Refusal {
            code: "invalid",
            reason,
        }
    }
}

/// The credential SETs use: `provisioning.write_credential`, else the one
/// that found the device. With `provisioning.writes_require_authpriv`, only
/// an SNMPv3 credential with authentication and privacy writes: a v1/v2c
/// SET carries its community in clear for anyone on the LAN to read.
fn write_credential(config: &Config, device: &Device) -> Result<Credential, Refusal> {
    let name = config
        .provisioning
        .write_credential
        .as_deref()
        .unwrap_or(&device.credential);
    let credential = config
        .credentials_or_default()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            Refusal::invalid(format!(
                "the credential {name:?} that would write to it is not configured"
            ))
        })?;
    let auth_priv = credential.version == config::SnmpVersion::V3
        && credential.auth_protocol.is_some()
        && credential.priv_protocol.is_some();
    if config.provisioning.writes_require_authpriv && !auth_priv {
        return Err(Refusal {
            code: "insecure_write",
            reason: format!(
                "provisioning.writes_require_authpriv is set and the credential {name:?} is not SNMPv3 with authentication and privacy; set provisioning.write_credential to one that is"
            ),
        });
    }
    Ok(credential)
}

/// Step 2: every OID's current value, as something that can be SET back.
async fn read_current(targets: &[Target], timing: Timing) -> Result<Vec<Kept>, String> {
    let mut kept = Vec::new();
    for target in targets {
        let mut client = Client::new(target.address, target.credential.clone(), timing);
        let oids: Vec<Oid> = target.sets.iter().map(|(oid, _)| oid.clone()).collect();
        let values = client.get(&oids).await.map_err(|e| {
            format!(
                "cannot read the current values on {}: {e}",
                target.device_id
            )
        })?;
        for (oid, value) in values {
            let current = SetValue::from_value(&value).ok_or_else(|| {
                format!(
                    "{oid} on {}: the current value ({value:?}) cannot be kept for a rollback, so it is not changed",
                    target.device_id
                )
            })?;
            let (kind, value) = current.to_json();
            kept.push(Kept {
                device_id: target.device_id.clone(),
                address: target.address,
                credential: target.credential.name.clone(),
                oid: oid.to_string(),
                kind: kind.into(),
                value,
            });
        }
    }
    Ok(kept)
}

/// Step 5: every OID reads back as set.
async fn verify_devices(targets: &[Target], timing: Timing) -> Result<(), String> {
    for target in targets {
        let mut client = Client::new(target.address, target.credential.clone(), timing);
        let oids: Vec<Oid> = target.sets.iter().map(|(oid, _)| oid.clone()).collect();
        let values = client
            .get(&oids)
            .await
            .map_err(|e| format!("cannot read back {}: {e}", target.device_id))?;
        for ((oid, wanted), (_, got)) in target.sets.iter().zip(&values) {
            if !wanted.matches(got) {
                return Err(format!(
                    "{oid} on {} reads back {got:?}, not the value set",
                    target.device_id
                ));
            }
        }
    }
    Ok(())
}

/// What a push would change: agent settings (secrets masked) and SETs.
fn diff(old: &Config, new: &Config, targets: &[Target]) -> Json {
    let mut agent = Vec::new();
    let before = serde_json::to_value(old).unwrap_or_default();
    let after = serde_json::to_value(new).unwrap_or_default();
    changed_keys("", &before, &after, &mut agent);
    let devices: Vec<Json> = targets
        .iter()
        .flat_map(|t| {
            t.sets.iter().map(|(oid, value)| {
                let (kind, value) = value.to_json();
                json!({ "device_id": t.device_id, "oid": oid.to_string(), "type": kind, "value": value })
            })
        })
        .collect();
    json!({ "agent": agent, "devices": devices })
}

fn changed_keys(prefix: &str, before: &Json, after: &Json, out: &mut Vec<Json>) {
    match (before, after) {
        (Json::Object(a), Json::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                changed_keys(
                    &path,
                    a.get(key).unwrap_or(&Json::Null),
                    b.get(key).unwrap_or(&Json::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(json!({ "key": prefix, "from": a, "to": b })),
        _ => {}
    }
}

/// The MIB objects that reboot a device, tried in order: the first the
/// device has is SET.
const REBOOT_OBJECTS: [(&str, &str, i32); 2] = [
    // DOCS-CABLE-DEVICE-MIB docsDevResetNow: true(1) resets a cable modem.
    ("docsDevResetNow", "1.3.6.1.2.1.69.1.1.3.0", 1),
    // Printer-MIB prtGeneralReset: powerCycleReset(4).
    ("prtGeneralReset", "1.3.6.1.2.1.43.5.1.1.3.1", 4),
];

async fn reboot(
    address: std::net::SocketAddr,
    credential: Credential,
    timing: Timing,
) -> Result<Json, String> {
    let mut client = Client::new(address, credential, timing);
    for (name, oid, value) in REBOOT_OBJECTS {
        let Ok(oid) = oid.parse::<Oid>() else {
            continue;
        };
        let present = client
            .get(std::slice::from_ref(&oid))
            .await
            .map_err(|e| format!("cannot reach the device: {e}"))?;
        if present.first().is_none_or(|(_, v)| v.is_exception()) {
            continue;
        }
        client
            .set(&[(oid.clone(), SetValue::Integer(value))])
            .await
            .map_err(|e| format!("SET {name} ({oid}) = {value} failed: {e}"))?;
        return Ok(json!({ "rebooting": true, "object": name, "oid": oid.to_string() }));
    }
    Err(format!(
        "the device supports no known reboot object ({})",
        REBOOT_OBJECTS.map(|(name, _, _)| name).join(", ")
    ))
}

/// Provisioning's state for `cpe-agent config show`.
pub fn show(state_dir: &Path) -> Result<Json, String> {
    let store = Store::new(state_dir);
    let state = store.state()?;
    let journal = store.journal()?;
    let applied = match &state.applied {
        Some(applied) => {
            let bundle = decode_applied(applied)?;
            let mut settings = Vec::new();
            if let Some(agent) = &bundle.desired.agent {
                let mut overlay = Json::Null;
                config::merge_json(&mut overlay, agent);
                leaf_keys("", &overlay, &mut settings);
            }
            json!({
                "version": applied.version,
                "key_id": applied.key_id,
                "applied_at": humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(applied.applied_at)).to_string(),
                "agent_settings": settings,
                "device_sets": bundle.desired.devices.values().map(Vec::len).sum::<usize>(),
            })
        }
        None => Json::Null,
    };
    Ok(json!({
        "applied": applied,
        "status": state.status.clone().unwrap_or_else(|| "none".into()),
        "last_error": state.last_error,
        "in_progress": journal.map(|j| json!({ "version": j.version, "step": j.step })),
        "history": state.history,
    }))
}

/// The dotted keys a pushed overlay sets (values left out: they may be secrets).
fn leaf_keys(prefix: &str, value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_keys(&path, inner, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_changed_keys_and_masks_secrets() {
        let old = Config::default();
        let mut new = Config::default();
        new.polling.interval = config::HumanDuration(Duration::from_secs(30));
        new.mqtt.password = Some(config::Secret::new("s3cret"));
        let out = diff(&old, &new, &[]);
        let text = out.to_string();
        assert!(text.contains("\"key\":\"polling.interval\""), "{text}");
        assert!(text.contains("\"to\":\"30s\""), "{text}");
        assert!(text.contains("mqtt.password"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn leaf_keys_list_what_an_overlay_sets() {
        let overlay = json!({"polling": {"interval": "30s"}, "credentials": [{"name": "x"}]});
        let mut keys = Vec::new();
        leaf_keys("", &overlay, &mut keys);
        keys.sort();
        assert_eq!(keys, ["credentials", "polling.interval"]);
    }

    #[test]
    fn every_step_of_the_hook_is_named_once() {
        let mut steps = STEPS.to_vec();
        steps.sort_unstable();
        steps.dedup();
        assert_eq!(steps.len(), STEPS.len());
    }
}
