//! Elastic IPs: AllocateAddress, AssociateAddress, DisassociateAddress, ReleaseAddress,
//! DescribeAddresses. An Elastic IP comes from the same pool as auto-assigned public IPs
//! (`--public-cidr`); while it is on an instance it replaces the instance's auto public IP, it
//! survives stop/start, and it is disassociated (still allocated) when the instance terminates.
//! The runtime is told of every change of an instance's public IP, so the SSH gateway (and
//! later the front listeners) follow the address at once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::instances::{Instance, KIND as INSTANCE_KIND, State as InstanceState};
use super::tags::{self, Filter, Filterable, Tag, TagSpec};
use super::{AwsError, Cloud, ids, validate};
use crate::store::Change;

pub const KIND: &str = "address";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Address {
    pub allocation_id: String,
    pub public_ip: String,
    pub instance_id: Option<String>,
    pub association_id: Option<String>,
    pub private_ip: Option<String>,
    pub tags: Vec<Tag>,
}

impl Filterable for Address {
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let opt = |o: &Option<String>| Some(o.iter().cloned().collect());
        match name {
            "allocation-id" => Some(vec![self.allocation_id.clone()]),
            "public-ip" => Some(vec![self.public_ip.clone()]),
            "domain" => Some(vec!["vpc".into()]),
            "instance-id" => opt(&self.instance_id),
            "association-id" => opt(&self.association_id),
            "private-ip-address" => opt(&self.private_ip),
            _ => None,
        }
    }
}

fn alloc_not_found(id: &str) -> AwsError {
    AwsError::new(
        "InvalidAllocationID.NotFound",
        format!("Allocation ID '{id}' not found."),
    )
}

fn ip_not_found(ip: &str) -> AwsError {
    AwsError::new(
        "InvalidAddress.NotFound",
        format!("Address '{ip}' not found."),
    )
}

/// Every public address in use: instances' (auto or elastic) and all allocated Elastic IPs.
pub(crate) fn public_ips_in_use(instances: &[Instance], addresses: &[Address]) -> Vec<String> {
    instances
        .iter()
        .filter_map(|i| i.public_ip.clone())
        .chain(addresses.iter().map(|a| a.public_ip.clone()))
        .collect()
}

impl Cloud {
    pub fn allocate_address(&self, tag_specs: &[TagSpec]) -> Result<Address, AwsError> {
        let mut st = self.state();
        self.cfg.limits.check_addresses(st.addresses.len())?;
        let used = public_ips_in_use(&st.instances, &st.addresses);
        let a = Address {
            allocation_id: ids::new_id("eipalloc"),
            public_ip: self.next_public_ip(&used)?,
            instance_id: None,
            association_id: None,
            private_ip: None,
            tags: tags::tags_for(tag_specs, "elastic-ip")?,
        };
        self.store()
            .apply(&[Change::put(KIND, &a.allocation_id, Some(&a.public_ip), &a)?])?;
        st.addresses.push(a.clone());
        Ok(a)
    }

    /// Finds an address by allocation id or public IP.
    fn address(
        &self,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<Address, AwsError> {
        if let Some(id) = allocation_id {
            validate::id(id, "eipalloc", "InvalidAllocationID.Malformed")?;
        }
        let st = self.state();
        match (allocation_id, public_ip) {
            (Some(id), _) => st
                .addresses
                .iter()
                .find(|a| a.allocation_id == id)
                .cloned()
                .ok_or_else(|| alloc_not_found(id)),
            (None, Some(ip)) => st
                .addresses
                .iter()
                .find(|a| a.public_ip == ip)
                .cloned()
                .ok_or_else(|| ip_not_found(ip)),
            (None, None) => Err(AwsError::missing("AllocationId")),
        }
    }

    /// AssociateAddress: returns the association id. Moves the address from another instance
    /// unless `allow_reassociation` is false.
    pub fn associate_address(
        self: &Arc<Self>,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
        instance_id: &str,
        allow_reassociation: Option<bool>,
    ) -> Result<String, AwsError> {
        let addr = self.address(allocation_id, public_ip)?;
        let inst = self.instance(instance_id)?;
        if matches!(
            inst.state,
            InstanceState::Terminated | InstanceState::ShuttingDown
        ) {
            return Err(AwsError::new(
                "IncorrectInstanceState",
                format!("The instance '{instance_id}' is not in a valid state for this operation."),
            ));
        }
        if addr.instance_id.as_deref() == Some(instance_id) {
            return Ok(addr.association_id.clone().unwrap_or_default()); // idempotent
        }
        if addr.instance_id.is_some() && allow_reassociation == Some(false) {
            return Err(AwsError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "The address {} is already associated with instance {}",
                    addr.public_ip,
                    addr.instance_id.clone().unwrap_or_default()
                ),
            ));
        }
        let association_id = ids::new_id("eipassoc");
        let changed = {
            let mut st = self.state();
            let mut changes = Vec::new();
            let mut touched: Vec<Instance> = Vec::new();
            // The instance the address leaves gets a fresh auto public IP if it runs (and was
            // launched with one).
            let mut used = public_ips_in_use(&st.instances, &st.addresses);
            if let Some(prev) = &addr.instance_id
                && let Some(p) = st.instances.iter().find(|i| &i.id == prev)
            {
                let mut p = p.clone();
                p.eip_allocation = None;
                p.public_ip = if !p.no_public_ip
                    && (p.state == InstanceState::Running || p.state == InstanceState::Pending)
                {
                    let ip = self.next_public_ip(&used)?;
                    used.push(ip.clone());
                    Some(ip)
                } else {
                    None
                };
                touched.push(p);
            }
            // An Elastic IP already on the target instance is disassociated (stays allocated).
            let mut addrs: Vec<Address> = Vec::new();
            if let Some(old) = st
                .addresses
                .iter()
                .find(|a| a.instance_id.as_deref() == Some(instance_id))
            {
                let mut old = old.clone();
                old.instance_id = None;
                old.association_id = None;
                old.private_ip = None;
                addrs.push(old);
            }
            let mut a = addr.clone();
            a.instance_id = Some(instance_id.to_string());
            a.association_id = Some(association_id.clone());
            a.private_ip = Some(inst.private_ip.clone());
            addrs.push(a);
            let mut t = st
                .instances
                .iter()
                .find(|i| i.id == instance_id)
                .cloned()
                .expect("checked above");
            t.public_ip = Some(addr.public_ip.clone());
            t.eip_allocation = Some(addr.allocation_id.clone());
            touched.push(t);
            for i in &touched {
                changes.push(Change::put(INSTANCE_KIND, &i.id, None, i)?);
            }
            for a in &addrs {
                changes.push(Change::put(KIND, &a.allocation_id, Some(&a.public_ip), a)?);
            }
            self.store().apply(&changes)?;
            for i in &touched {
                if let Some(s) = st.instances.iter_mut().find(|x| x.id == i.id) {
                    *s = i.clone();
                }
            }
            for a in addrs {
                if let Some(s) = st
                    .addresses
                    .iter_mut()
                    .find(|x| x.allocation_id == a.allocation_id)
                {
                    *s = a;
                }
            }
            touched
        };
        for i in &changed {
            self.host().public_ip_changed(i);
        }
        Ok(association_id)
    }

    /// DisassociateAddress by association id or public IP. The instance gets a new auto
    /// public IP if it runs.
    pub fn disassociate_address(
        self: &Arc<Self>,
        association_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<(), AwsError> {
        if let Some(id) = association_id {
            validate::id(id, "eipassoc", "InvalidAssociationID.Malformed")?;
        }
        let addr = {
            let st = self.state();
            match (association_id, public_ip) {
                (Some(id), _) => st
                    .addresses
                    .iter()
                    .find(|a| a.association_id.as_deref() == Some(id))
                    .cloned()
                    .ok_or_else(|| {
                        AwsError::new(
                            "InvalidAssociationID.NotFound",
                            format!("Association ID '{id}' not found."),
                        )
                    })?,
                (None, Some(ip)) => st
                    .addresses
                    .iter()
                    .find(|a| a.public_ip == ip)
                    .cloned()
                    .ok_or_else(|| ip_not_found(ip))?,
                (None, None) => return Err(AwsError::missing("AssociationId")),
            }
        };
        let Some(iid) = addr.instance_id.clone() else {
            return Ok(());
        };
        let changed = self.detach_eip(&addr, &iid, true)?;
        if let Some(i) = changed {
            self.host().public_ip_changed(&i);
        }
        Ok(())
    }

    /// Takes an Elastic IP off its instance (one transaction). With `new_auto_ip`, a running
    /// instance gets a fresh auto public IP. Returns the instance as it is now.
    pub(crate) fn detach_eip(
        &self,
        addr: &Address,
        iid: &str,
        new_auto_ip: bool,
    ) -> Result<Option<Instance>, AwsError> {
        let mut st = self.state();
        let mut used = public_ips_in_use(&st.instances, &st.addresses);
        used.retain(|ip| *ip != addr.public_ip);
        let mut a = addr.clone();
        a.instance_id = None;
        a.association_id = None;
        a.private_ip = None;
        let mut changes = vec![Change::put(KIND, &a.allocation_id, Some(&a.public_ip), &a)?];
        let inst = st
            .instances
            .iter()
            .find(|i| i.id == iid)
            .cloned()
            .map(|mut i| {
                i.eip_allocation = None;
                i.public_ip = None;
                i
            });
        let inst = match inst {
            Some(mut i) => {
                if new_auto_ip
                    && !i.no_public_ip
                    && matches!(i.state, InstanceState::Running | InstanceState::Pending)
                {
                    used.push(addr.public_ip.clone());
                    i.public_ip = Some(self.next_public_ip(&used)?);
                }
                changes.push(Change::put(INSTANCE_KIND, &i.id, None, &i)?);
                Some(i)
            }
            None => None,
        };
        self.store().apply(&changes)?;
        if let Some(s) = st
            .addresses
            .iter_mut()
            .find(|x| x.allocation_id == a.allocation_id)
        {
            *s = a;
        }
        if let Some(i) = &inst
            && let Some(s) = st.instances.iter_mut().find(|x| x.id == i.id)
        {
            *s = i.clone();
        }
        Ok(inst)
    }

    pub fn release_address(
        &self,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<(), AwsError> {
        let addr = self.address(allocation_id, public_ip)?;
        if addr.instance_id.is_some() {
            return Err(AwsError::new(
                "InvalidIPAddress.InUse",
                format!(
                    "Address {} is in use: disassociate it first.",
                    addr.public_ip
                ),
            ));
        }
        let mut st = self.state();
        self.store()
            .apply(&[Change::delete(KIND, &addr.allocation_id)])?;
        st.addresses
            .retain(|a| a.allocation_id != addr.allocation_id);
        Ok(())
    }

    pub fn describe_addresses(
        &self,
        allocation_ids: &[String],
        public_ips: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Address>, AwsError> {
        let st = self.state();
        for id in allocation_ids {
            if !st.addresses.iter().any(|a| &a.allocation_id == id) {
                return Err(alloc_not_found(id));
            }
        }
        for ip in public_ips {
            if !st.addresses.iter().any(|a| &a.public_ip == ip) {
                return Err(AwsError::new(
                    "InvalidAddress.NotFound",
                    format!("Address '{ip}' not found."),
                ));
            }
        }
        let mut out = Vec::new();
        for a in &st.addresses {
            if (!allocation_ids.is_empty() && !allocation_ids.contains(&a.allocation_id))
                || (!public_ips.is_empty() && !public_ips.contains(&a.public_ip))
            {
                continue;
            }
            if tags::matches(a, filters)? {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    /// The Elastic IP on an instance, if any (terminate disassociates it).
    pub(crate) fn eip_of(&self, instance_id: &str) -> Option<Address> {
        self.state()
            .addresses
            .iter()
            .find(|a| a.instance_id.as_deref() == Some(instance_id))
            .cloned()
    }
}
