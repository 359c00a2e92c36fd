//! Instances and their lifecycle with EC2's states and codes:
//!
//! ```text
//! RunInstances → pending(0) → running(16)
//! running --Stop--> stopping(64) → stopped(80) --Start--> pending → running
//! running --Reboot--> running
//! any --Terminate--> shutting-down(32) → terminated(48)   (visible for an hour)
//! ```
//!
//! The record changes first (one transaction), then the [`Host`](super::host::Host) makes it
//! real. A launch that fails leaves no record; stop and terminate finish in the background, as on
//! AWS, and their end state is recorded when the sandbox is gone. What the host does for each
//! transition, one at a time per instance, and the reconciliation at start are in `lifecycle`.

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::addresses::public_ips_in_use;
use super::images::{self, Image};
use super::launch::Launch;
use super::network::{self, Network};
use super::security_groups::{self, SecurityGroup};
use super::tags::{self, Filter, Filterable, Tag, TagSpec};
use super::{AwsError, Cloud, catalog, ids, limits, now_iso, validate};
use crate::store::Change;

pub const KIND: &str = "instance";
/// How long terminated instances stay visible.
pub const TERMINATED_VISIBLE_SECS: i64 = 3600;
/// Most instances one RunInstances call may start.
pub const MAX_PER_CALL: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Pending,
        State::Running,
        State::ShuttingDown,
        State::Terminated,
        State::Stopping,
        State::Stopped,
    ];

    pub fn code(self) -> u16 {
        match self {
            State::Pending => 0,
            State::Running => 16,
            State::ShuttingDown => 32,
            State::Terminated => 48,
            State::Stopping => 64,
            State::Stopped => 80,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::ShuttingDown => "shutting-down",
            State::Terminated => "terminated",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub reservation_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub key_name: Option<String>,
    /// The launch key's authorized_keys line (kept so the instance works if the key pair is deleted).
    pub public_key: Option<String>,
    pub state: State,
    /// `stateReason`: (code, message), e.g. `Client.UserInitiatedShutdown`.
    pub state_reason: Option<(String, String)>,
    /// `reason`: e.g. `User initiated (2026-11-22 03:10:50 GMT)`.
    pub transition_reason: String,
    pub zone: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub private_ip: String,
    pub public_ip: Option<String>,
    pub launch_time: String,
    pub ami_launch_index: u32,
    pub tags: Vec<Tag>,
    /// Raw user data, base64 (as on the wire).
    pub user_data: Option<String>,
    pub client_token: Option<String>,
    pub shutdown_behavior: String,
    pub disable_api_termination: bool,
    pub http_tokens: String,
    pub http_endpoint: String,
    pub http_hop_limit: u32,
    pub instance_metadata_tags: bool,
    pub groups: Vec<GroupRef>,
    pub root_volume_id: String,
    pub root_attach_time: String,
    /// The Elastic IP on the instance (its `public_ip` is then that address).
    #[serde(default)]
    pub eip_allocation: Option<String>,
    /// Launched with `AssociatePublicIpAddress=false`: no auto-assigned public IP, ever (an
    /// Elastic IP still gives it one).
    #[serde(default)]
    pub no_public_ip: bool,
    /// Block devices, IAM profile, monitoring… as RunInstances gave them.
    #[serde(default)]
    pub launch: Launch,
    /// Seconds since the epoch when it reached `terminated`.
    pub terminated_at: Option<i64>,
}

impl Instance {
    pub fn user_data_bytes(&self) -> Option<Vec<u8>> {
        self.user_data
            .as_ref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    }
    pub fn private_dns(&self, region: &str) -> String {
        format!(
            "ip-{}.{}.compute.internal",
            self.private_ip.replace('.', "-"),
            region
        )
    }
    /// A stable, locally administered MAC address for its interface (`06:…` like EC2's).
    pub fn mac(&self) -> String {
        use sha2::Digest;
        let h = sha2::Sha256::digest(self.id.as_bytes());
        format!(
            "06:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            h[0], h[1], h[2], h[3], h[4]
        )
    }
    pub fn public_dns(&self, region: &str) -> Option<String> {
        self.public_ip.as_ref().map(|ip| {
            format!(
                "ec2-{}.{}.compute.amazonaws.com",
                ip.replace('.', "-"),
                region
            )
        })
    }
    pub fn hostname(&self) -> String {
        format!("ip-{}", self.private_ip.replace('.', "-"))
    }
    pub fn name_tag(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == "Name")
            .map(|t| t.value.as_str())
    }
}

impl Filterable for Instance {
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |s: &str| Some(vec![s.to_string()]);
        match name {
            "instance-id" => one(&self.id),
            "instance-state-name" => one(self.state.name()),
            "instance-state-code" => one(&self.state.code().to_string()),
            "availability-zone" => one(&self.zone),
            "image-id" => one(&self.image_id),
            "instance-type" => one(&self.instance_type),
            "key-name" => Some(self.key_name.iter().cloned().collect()),
            "private-ip-address" => one(&self.private_ip),
            "ip-address" | "public-ip-address" => Some(self.public_ip.iter().cloned().collect()),
            "reservation-id" => one(&self.reservation_id),
            "subnet-id" => one(&self.subnet_id),
            "vpc-id" => one(&self.vpc_id),
            "instance.group-id" | "group-id" => {
                Some(self.groups.iter().map(|g| g.id.clone()).collect())
            }
            "instance.group-name" | "group-name" => {
                Some(self.groups.iter().map(|g| g.name.clone()).collect())
            }
            "client-token" => Some(self.client_token.iter().cloned().collect()),
            "launch-index" => one(&self.ami_launch_index.to_string()),
            "architecture" => one("x86_64"),
            "root-device-type" => one("ebs"),
            "tenancy" => one("default"),
            _ => None,
        }
    }
}

/// The parameters of RunInstances, decoded by the API.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub image_id: String,
    pub instance_type: Option<String>,
    pub min_count: u32,
    pub max_count: u32,
    pub key_name: Option<String>,
    /// Base64, as on the wire.
    pub user_data: Option<String>,
    pub zone: Option<String>,
    pub subnet_id: Option<String>,
    pub tag_specs: Vec<TagSpec>,
    pub client_token: Option<String>,
    pub shutdown_behavior: Option<String>,
    /// `MetadataOptions.*`, checked; AWS's defaults for what is not given.
    pub metadata: super::metadata_options::MetadataOptions,
    pub security_group_ids: Vec<String>,
    pub security_groups: Vec<String>,
    pub private_ip: Option<String>,
    pub disable_api_termination: bool,
    /// `AssociatePublicIpAddress` of the primary interface; the default VPC's subnets map a
    /// public IP on launch, so `None` means yes.
    pub associate_public_ip: Option<bool>,
    pub launch: Launch,
}

/// One instance's change of state, as Start/Stop/TerminateInstances report it.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub id: String,
    pub previous: State,
    pub current: State,
}

pub fn check_id(id: &str) -> Result<(), AwsError> {
    validate::id(id, "i", "InvalidInstanceID.Malformed")
}

fn not_found(missing: &[String]) -> AwsError {
    if missing.len() == 1 {
        AwsError::new(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{}' does not exist", missing[0]),
        )
    } else {
        AwsError::new(
            "InvalidInstanceID.NotFound",
            format!("The instance IDs '{}' do not exist", missing.join(", ")),
        )
    }
}

fn incorrect_state(msg: String) -> AwsError {
    AwsError::new("IncorrectInstanceState", msg)
}

/// The groups named by id and by name (RunInstances, ModifyInstanceAttribute); the VPC's
/// default group when none is named.
fn resolve_groups(
    all: &[SecurityGroup],
    net: &Network,
    ids_in: &[String],
    names: &[String],
) -> Result<Vec<GroupRef>, AwsError> {
    let mut out = Vec::new();
    for id in ids_in {
        let g = all
            .iter()
            .find(|g| &g.id == id)
            .ok_or_else(|| security_groups::group_not_found(id))?;
        out.push(GroupRef {
            id: g.id.clone(),
            name: g.name.clone(),
        });
    }
    for name in names {
        let g = all.iter().find(|g| &g.name == name).ok_or_else(|| {
            AwsError::new(
                "InvalidGroup.NotFound",
                format!(
                    "The security group '{name}' does not exist in default VPC '{}'",
                    net.vpc_id
                ),
            )
        })?;
        out.push(GroupRef {
            id: g.id.clone(),
            name: g.name.clone(),
        });
    }
    if out.is_empty() {
        out.push(GroupRef {
            id: net.default_sg_id.clone(),
            name: "default".into(),
        });
    }
    out.dedup();
    Ok(out)
}

fn user_reason(what: &str) -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    format!("{what} ({} GMT)", t.format(fmt).expect("formattable"))
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Cloud {
    /// RunInstances. Returns the new instances as they were when launched (`pending`).
    pub fn run_instances(self: &Arc<Self>, req: RunRequest) -> Result<Vec<Instance>, AwsError> {
        images::check_id(&req.image_id)?;
        // Idempotency: the same ClientToken returns the same reservation.
        if let Some(token) = &req.client_token {
            validate::client_token(token)?;
            let st = self.state();
            let same: Vec<Instance> = st
                .instances
                .iter()
                .filter(|i| i.client_token.as_deref() == Some(token.as_str()))
                .cloned()
                .collect();
            if !same.is_empty() {
                return Ok(same);
            }
        }
        let image = self.image(&req.image_id)?;
        let itype = req
            .instance_type
            .clone()
            .unwrap_or_else(|| "t2.micro".into());
        catalog::offered_type(&itype, "InvalidParameterValue")?;
        req.launch
            .check(&itype, &image.root_device_name, image.root_size_gib)?;
        let with_public_ip = req.associate_public_ip != Some(false);
        if req.min_count < 1 || req.max_count < req.min_count {
            return Err(AwsError::invalid(format!(
                "MinCount ({}) must be at least 1 and no more than MaxCount ({})",
                req.min_count, req.max_count
            )));
        }
        if req.min_count > MAX_PER_CALL {
            return Err(AwsError::new(
                "InstanceLimitExceeded",
                format!(
                    "You have requested more instances ({}) than the lab allows in one call ({MAX_PER_CALL}).",
                    req.min_count
                ),
            ));
        }
        let count = req.max_count.min(MAX_PER_CALL);
        let (key_name, public_key) = match &req.key_name {
            Some(k) => {
                let kp = self.key_pair(k)?;
                (Some(kp.name), Some(kp.public_key))
            }
            None => (None, None),
        };
        if let Some(u) = &req.user_data {
            validate::user_data(u)?;
        }
        let shutdown_behavior = req
            .shutdown_behavior
            .clone()
            .unwrap_or_else(|| "stop".into());
        if shutdown_behavior != "stop" && shutdown_behavior != "terminate" {
            return Err(AwsError::invalid_value(
                "InstanceInitiatedShutdownBehavior",
                &shutdown_behavior,
            ));
        }
        let instance_tags = tags::tags_for(
            &req.tag_specs
                .iter()
                .filter(|s| s.resource_type == "instance")
                .cloned()
                .collect::<Vec<_>>(),
            "instance",
        )?;
        for s in &req.tag_specs {
            if !["instance", "volume", "network-interface"].contains(&s.resource_type.as_str()) {
                return Err(AwsError::invalid(format!(
                    "'{}' is not a valid taggable resource type for this operation.",
                    s.resource_type
                )));
            }
        }

        let reservation_id = ids::new_id("r");
        let launch_time = now_iso();
        let mut created: Vec<Instance> = Vec::new();
        {
            let mut st = self.state();
            let count = self.cfg.limits.instances_allowed(
                limits::vcpus_in_use(&st.instances),
                limits::vcpus_of(&itype),
                req.min_count,
                count,
            )?;
            let net = self.network();
            let subnet = network::pick_subnet(
                &net,
                &self.cfg.region,
                req.zone.as_deref(),
                req.subnet_id.as_deref(),
                st.instances.len(),
            )?;
            let groups = resolve_groups(
                &st.security_groups,
                &net,
                &req.security_group_ids,
                &req.security_groups,
            )?;
            if count > 1 && req.private_ip.is_some() {
                return Err(AwsError::combination(
                    "PrivateIpAddress can only be used when launching one instance.",
                ));
            }
            let mut used: Vec<String> = st
                .instances
                .iter()
                .filter(|i| i.state != State::Terminated)
                .map(|i| i.private_ip.clone())
                .collect();
            let mut public_used = public_ips_in_use(&st.instances, &st.addresses);
            for idx in 0..count {
                let private_ip = match &req.private_ip {
                    Some(ip) => network::claim_ip(&subnet, ip, &used)?,
                    None => network::next_ip(&subnet, &used)?,
                };
                used.push(private_ip.clone());
                let public_ip = if with_public_ip {
                    let ip = self.next_public_ip(&public_used)?;
                    public_used.push(ip.clone());
                    Some(ip)
                } else {
                    None
                };
                created.push(Instance {
                    id: ids::new_id("i"),
                    reservation_id: reservation_id.clone(),
                    image_id: image.id.clone(),
                    instance_type: itype.clone(),
                    key_name: key_name.clone(),
                    public_key: public_key.clone(),
                    state: State::Pending,
                    state_reason: None,
                    transition_reason: String::new(),
                    zone: subnet.zone.clone(),
                    subnet_id: subnet.id.clone(),
                    vpc_id: net.vpc_id.clone(),
                    private_ip,
                    public_ip,
                    launch_time: launch_time.clone(),
                    ami_launch_index: idx,
                    tags: instance_tags.clone(),
                    user_data: req.user_data.clone(),
                    client_token: req.client_token.clone(),
                    shutdown_behavior: shutdown_behavior.clone(),
                    disable_api_termination: req.disable_api_termination,
                    http_tokens: "optional".into(),
                    http_endpoint: "enabled".into(),
                    http_hop_limit: 1,
                    instance_metadata_tags: false,
                    groups: groups.clone(),
                    root_volume_id: ids::new_id("vol"),
                    root_attach_time: launch_time.clone(),
                    eip_allocation: None,
                    no_public_ip: !with_public_ip,
                    launch: req.launch.for_instance(),
                    terminated_at: None,
                });
                if let Some(i) = created.last_mut() {
                    req.metadata.apply(i);
                }
            }
            let changes: Vec<Change> = created
                .iter()
                .map(|i| Change::put(KIND, &i.id, None, i))
                .collect::<Result<_, _>>()?;
            self.store().apply(&changes)?;
            st.instances.extend(created.iter().cloned());
        }
        // Boot them. If any fails, the whole call fails and leaves nothing behind.
        let mut booted: Vec<&Instance> = Vec::new();
        for inst in &created {
            if let Err(e) = self.boot(inst, &image, &[State::Pending]) {
                for b in &booted {
                    self.host().stop(&b.id);
                }
                for i in &created {
                    self.host().destroy(&i.id);
                }
                let mut st = self.state();
                let changes: Vec<Change> = created
                    .iter()
                    .map(|i| Change::delete(KIND, &i.id))
                    .collect();
                let _ = self.store().apply(&changes);
                st.instances
                    .retain(|i| !created.iter().any(|c| c.id == i.id));
                return Err(AwsError::new(
                    "InsufficientInstanceCapacity",
                    format!("The lab could not start instance {}: {e}", inst.id),
                ));
            }
            booted.push(inst);
        }
        Ok(created)
    }

    /// The instances, for DescribeInstances; terminated ones disappear after an hour.
    pub fn describe_instances(
        &self,
        ids_wanted: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Instance>, AwsError> {
        for id in ids_wanted {
            check_id(id)?;
        }
        self.purge_old_terminated()?;
        let st = self.state();
        let missing: Vec<String> = ids_wanted
            .iter()
            .filter(|id| !st.instances.iter().any(|i| &i.id == *id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(not_found(&missing));
        }
        let mut out = Vec::new();
        for i in &st.instances {
            if !ids_wanted.is_empty() && !ids_wanted.contains(&i.id) {
                continue;
            }
            if tags::matches(i, filters)? {
                out.push(i.clone());
            }
        }
        Ok(out)
    }

    fn purge_old_terminated(&self) -> Result<(), AwsError> {
        let cutoff = now_secs() - TERMINATED_VISIBLE_SECS;
        let mut st = self.state();
        let old: Vec<String> = st
            .instances
            .iter()
            .filter(|i| i.state == State::Terminated && i.terminated_at.is_some_and(|t| t < cutoff))
            .map(|i| i.id.clone())
            .collect();
        if !old.is_empty() {
            let changes: Vec<Change> = old.iter().map(|id| Change::delete(KIND, id)).collect();
            self.store().apply(&changes)?;
            st.instances.retain(|i| !old.contains(&i.id));
        }
        Ok(())
    }

    pub fn instance(&self, id: &str) -> Result<Instance, AwsError> {
        check_id(id)?;
        self.state()
            .instances
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| not_found(&[id.to_string()]))
    }

    /// Looks up the given ids; all must exist (EC2 fails the whole call otherwise).
    fn existing(&self, ids_wanted: &[String]) -> Result<Vec<Instance>, AwsError> {
        if ids_wanted.is_empty() {
            return Err(AwsError::missing("InstanceId"));
        }
        for id in ids_wanted {
            check_id(id)?;
        }
        let st = self.state();
        let missing: Vec<String> = ids_wanted
            .iter()
            .filter(|id| !st.instances.iter().any(|i| &i.id == *id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(not_found(&missing));
        }
        Ok(ids_wanted
            .iter()
            .filter_map(|id| st.instances.iter().find(|i| &i.id == id).cloned())
            .collect())
    }

    /// Records a new state for instances (one transaction).
    fn set_states(
        &self,
        ids_to_set: &[String],
        state: State,
        reason: Option<(&str, &str)>,
        transition: &str,
    ) -> Result<(), AwsError> {
        self.set_states_from(ids_to_set, &State::ALL, state, reason, transition)
    }

    /// Records a new state for those of the instances whose state is one of `from` (compare and
    /// set, one transaction).
    pub(super) fn set_states_from(
        &self,
        ids_to_set: &[String],
        from: &[State],
        state: State,
        reason: Option<(&str, &str)>,
        transition: &str,
    ) -> Result<(), AwsError> {
        let mut st = self.state();
        let mut changes = Vec::new();
        let mut updated = Vec::new();
        let chosen = |i: &&Instance| ids_to_set.contains(&i.id) && from.contains(&i.state);
        for i in st.instances.iter().filter(chosen) {
            let mut n = i.clone();
            n.state = state;
            if let Some((c, m)) = reason {
                n.state_reason = Some((c.to_string(), m.to_string()));
            } else if state == State::Running || state == State::Pending {
                n.state_reason = None;
            }
            if !transition.is_empty() || state == State::Running {
                n.transition_reason = transition.to_string();
            }
            if state == State::Terminated {
                n.terminated_at = Some(now_secs());
                n.public_ip = None;
            }
            // A stopped instance gives back its auto public IP but keeps an Elastic IP.
            if state == State::Stopped && n.eip_allocation.is_none() {
                n.public_ip = None;
            }
            changes.push(Change::put(KIND, &n.id, None, &n)?);
            updated.push(n);
        }
        self.store().apply(&changes)?;
        for n in updated {
            if let Some(slot) = st.instances.iter_mut().find(|i| i.id == n.id) {
                *slot = n;
            }
        }
        Ok(())
    }

    pub fn stop_instances(
        self: &Arc<Self>,
        ids_wanted: &[String],
        force: bool,
    ) -> Result<Vec<StateChange>, AwsError> {
        let insts = self.existing(ids_wanted)?;
        for i in &insts {
            match i.state {
                State::Pending => {
                    return Err(incorrect_state(format!(
                        "Instance '{}' cannot be stopped as it has never reached the 'running' state.",
                        i.id
                    )));
                }
                State::ShuttingDown | State::Terminated => {
                    return Err(incorrect_state(format!(
                        "This instance '{}' is not in a state from which it can be stopped.",
                        i.id
                    )));
                }
                _ => {}
            }
        }
        let to_stop: Vec<String> = insts
            .iter()
            .filter(|i| i.state == State::Running)
            .map(|i| i.id.clone())
            .collect();
        self.set_states(
            &to_stop,
            State::Stopping,
            Some((
                "Client.UserInitiatedShutdown",
                "Client.UserInitiatedShutdown: User initiated shutdown",
            )),
            &user_reason("User initiated"),
        )?;
        let _ = force;
        for id in &to_stop {
            let me = self.clone();
            let id = id.clone();
            std::thread::spawn(move || me.finish_stop(&id));
        }
        Ok(insts
            .iter()
            .map(|i| StateChange {
                id: i.id.clone(),
                previous: i.state,
                current: if i.state == State::Running {
                    State::Stopping
                } else {
                    i.state
                },
            })
            .collect())
    }

    pub fn start_instances(
        self: &Arc<Self>,
        ids_wanted: &[String],
    ) -> Result<Vec<StateChange>, AwsError> {
        let insts = self.existing(ids_wanted)?;
        for i in &insts {
            if !matches!(i.state, State::Stopped | State::Running | State::Pending) {
                return Err(incorrect_state(format!(
                    "The instance '{}' is not in a state from which it can be started.",
                    i.id
                )));
            }
        }
        let start_ids: Vec<String> = insts
            .iter()
            .filter(|i| i.state == State::Stopped)
            .map(|i| i.id.clone())
            .collect();
        {
            let st = self.state();
            let asked: u32 = insts
                .iter()
                .filter(|i| i.state == State::Stopped)
                .map(|i| limits::vcpus_of(&i.instance_type))
                .sum();
            if asked > 0 {
                let in_use = limits::vcpus_in_use(&st.instances);
                self.cfg.limits.instances_allowed(in_use, asked, 1, 1)?;
            }
        }
        self.set_states(&start_ids, State::Pending, None, "")?;
        // A new auto-assigned public IP on every start, as on AWS.
        let to_start = self.assign_public_ips(&start_ids)?;
        let failed: Vec<AwsError> = to_start
            .iter()
            .filter_map(|i| self.boot_or_record(i, &[State::Pending]).err())
            .collect();
        if let Some(e) = failed.into_iter().next() {
            return Err(e);
        }
        Ok(insts
            .iter()
            .map(|i| StateChange {
                id: i.id.clone(),
                previous: i.state,
                current: if i.state == State::Stopped {
                    State::Pending
                } else {
                    i.state
                },
            })
            .collect())
    }

    /// The image to boot an instance from. Its record must still exist: an instance whose AMI
    /// was deregistered cannot be started again (EC2 allows it; not supported yet).
    pub(super) fn image_for_boot(&self, i: &Instance) -> Result<Image, AwsError> {
        self.image(&i.image_id)
    }

    pub fn reboot_instances(self: &Arc<Self>, ids_wanted: &[String]) -> Result<(), AwsError> {
        let insts = self.existing(ids_wanted)?;
        for i in insts.into_iter().filter(|i| i.state == State::Running) {
            let me = self.clone();
            std::thread::spawn(move || me.finish_reboot(&i));
        }
        Ok(())
    }

    pub fn terminate_instances(
        self: &Arc<Self>,
        ids_wanted: &[String],
    ) -> Result<Vec<StateChange>, AwsError> {
        let insts = self.existing(ids_wanted)?;
        if let Some(i) = insts
            .iter()
            .find(|i| i.disable_api_termination && i.state != State::Terminated)
        {
            return Err(AwsError::new(
                "OperationNotPermitted",
                format!(
                    "The instance '{}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.",
                    i.id
                ),
            ));
        }
        let to_end: Vec<String> = insts
            .iter()
            .filter(|i| !matches!(i.state, State::Terminated | State::ShuttingDown))
            .map(|i| i.id.clone())
            .collect();
        self.set_states(
            &to_end,
            State::ShuttingDown,
            Some((
                "Client.UserInitiatedShutdown",
                "Client.UserInitiatedShutdown: User initiated shutdown",
            )),
            &user_reason("User initiated"),
        )?;
        for id in &to_end {
            let me = self.clone();
            let id = id.clone();
            std::thread::spawn(move || me.finish_terminate(&id));
        }
        Ok(insts
            .iter()
            .map(|i| StateChange {
                id: i.id.clone(),
                previous: i.state,
                current: if i.state == State::Terminated {
                    State::Terminated
                } else {
                    State::ShuttingDown
                },
            })
            .collect())
    }

    /// ModifyInstanceAttribute for the attributes that can change (type and user data only while
    /// stopped, as on EC2).
    pub fn modify_instance_attribute(
        &self,
        id: &str,
        attr: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        let inst = self.instance(id)?;
        let mut n = inst.clone();
        let need_stopped = |what: &str| {
            if inst.state != State::Stopped {
                Err(incorrect_state(format!(
                    "The instance '{id}' is not in the 'stopped' state, so its {what} cannot be changed."
                )))
            } else {
                Ok(())
            }
        };
        match attr {
            "instanceType" => {
                need_stopped("instance type")?;
                catalog::offered_type(value, "InvalidParameterValue")?;
                n.instance_type = value.to_string();
            }
            "userData" => {
                need_stopped("user data")?;
                validate::user_data(value)?;
                n.user_data = if value.is_empty() {
                    None
                } else {
                    Some(value.to_string())
                };
            }
            "instanceInitiatedShutdownBehavior" => {
                if value != "stop" && value != "terminate" {
                    return Err(AwsError::invalid_value(
                        "InstanceInitiatedShutdownBehavior",
                        value,
                    ));
                }
                n.shutdown_behavior = value.to_string();
            }
            "disableApiTermination" => {
                n.disable_api_termination = match value {
                    "true" => true,
                    "false" => false,
                    o => return Err(AwsError::invalid_value("DisableApiTermination", o)),
                };
            }
            "groupSet" => {
                // Changing the groups works while the instance runs; the next connection obeys.
                let wanted: Vec<String> = value.split(',').map(str::to_string).collect();
                let st = self.state();
                n.groups = resolve_groups(&st.security_groups, &self.network(), &wanted, &[])?;
                drop(st);
                self.put_instance(n)?;
                self.host().groups_changed();
                return Ok(());
            }
            other => {
                return Err(AwsError::new(
                    "InvalidParameterValue",
                    format!(
                        "Value ({other}) for parameter attribute is invalid. The lab can modify instanceType, userData, instanceInitiatedShutdownBehavior and disableApiTermination."
                    ),
                ));
            }
        }
        self.put_instance(n)
    }

    pub(super) fn put_instance(&self, n: Instance) -> Result<(), AwsError> {
        let mut st = self.state();
        self.store().apply(&[Change::put(KIND, &n.id, None, &n)?])?;
        if let Some(slot) = st.instances.iter_mut().find(|i| i.id == n.id) {
            *slot = n;
        }
        Ok(())
    }

    pub fn console_output(&self, id: &str) -> Result<Vec<u8>, AwsError> {
        let inst = self.instance(id)?;
        Ok(self.host().console(&inst.id))
    }

    /// Gives each instance without a public IP a fresh one from the pool, unless it was launched
    /// without one (one transaction).
    fn assign_public_ips(&self, ids_to_set: &[String]) -> Result<Vec<Instance>, AwsError> {
        let mut st = self.state();
        let mut used = public_ips_in_use(&st.instances, &st.addresses);
        let mut changes = Vec::new();
        let mut updated = Vec::new();
        for i in st.instances.iter().filter(|i| ids_to_set.contains(&i.id)) {
            let mut n = i.clone();
            if n.public_ip.is_none() && !n.no_public_ip {
                let ip = self.next_public_ip(&used)?;
                used.push(ip.clone());
                n.public_ip = Some(ip);
            }
            changes.push(Change::put(KIND, &n.id, None, &n)?);
            updated.push(n);
        }
        self.store().apply(&changes)?;
        for n in &updated {
            if let Some(slot) = st.instances.iter_mut().find(|i| i.id == n.id) {
                *slot = n.clone();
            }
        }
        Ok(updated)
    }

    pub(crate) fn network(&self) -> Network {
        self.network.clone()
    }

    /// Instances that should be running, for the daemon's start-up reconciliation.
    pub fn instances_in(&self, states: &[State]) -> Vec<Instance> {
        self.state()
            .instances
            .iter()
            .filter(|i| states.contains(&i.state))
            .cloned()
            .collect()
    }
}
