//! The full sync of a fresh policy instance: the state's columns,
//! attributes and static ports, lowered from the state's own data. A policy
//! of contract 0.3.0 takes attributes as columns and ports as one flat list
//! (`bulk`); older ones take 0.1.0's per-instance lists.

use rustc_hash::FxHashMap;
use wasmtime::Store;
use wasmtime::component::Instance;

use berth_core::placement::ClusterState;

use super::{PolicySession, instance_name, static_ports, wit};
use crate::bindings::PlacementPolicy;
use crate::host::{BulkExports, StoreData};

/// One attribute as `set-attributes` takes it: interned name, value.
type Attr<'a> = (u32, Option<&'a str>);

/// Value ids of `bulk.set-attribute-column`: absent, bare, then `values[k]`
/// as `FIRST_VALUE + k`.
const ABSENT: u32 = 0;
const BARE: u32 = 1;
const FIRST_VALUE: u32 = 2;

/// Distinct values a column looks up by scanning before it builds an index.
const SCAN_VALUES: usize = 8;

/// One attribute on every instance, as `set-attribute-column` takes it.
struct Column<'a> {
    ids: Vec<u32>,
    values: Vec<&'a str>,
    /// Built once the column has more than [`SCAN_VALUES`] values.
    index: FxHashMap<&'a str, u32>,
}

impl<'a> Column<'a> {
    fn id(&mut self, value: Option<&'a str>) -> u32 {
        let Some(v) = value else { return BARE };
        let found = if self.values.len() <= SCAN_VALUES {
            self.values.iter().position(|x| *x == v).map(|k| k as u32)
        } else {
            self.index.get(v).copied()
        };
        if let Some(k) = found {
            return FIRST_VALUE + k;
        }
        let k = self.values.len() as u32;
        self.values.push(v);
        if self.values.len() > SCAN_VALUES {
            if self.index.is_empty() {
                self.index
                    .extend(self.values.iter().enumerate().map(|(j, x)| (*x, j as u32)));
            } else {
                self.index.insert(v, k);
            }
        }
        FIRST_VALUE + k
    }
}

impl PolicySession {
    /// Sends the whole state to a fresh instance: `sync-full` (columns),
    /// the attribute names, then the attributes and static ports (in bulk
    /// when the policy takes them so).
    pub(super) fn full_sync(
        &mut self,
        store: &mut Store<StoreData>,
        instance: &Instance,
        bindings: &PlacementPolicy,
        state: &ClusterState,
    ) -> wasmtime::Result<()> {
        let n = state.len();
        if self.policy.compiled.uses_names {
            store
                .data_mut()
                .names
                .set_all(state.instances().iter().map(instance_name));
        }
        let (lo, hi) = state.ephemeral_ports();
        let range = u32::from(hi - lo) + 1;
        let mut cols = wit::ClusterColumns {
            schedulable: Vec::with_capacity(n),
            cpu_total: Vec::with_capacity(n),
            memory_total: Vec::with_capacity(n),
            cpu_free: Vec::with_capacity(n),
            memory_free: Vec::with_capacity(n),
            ephemeral_tcp_free: Vec::with_capacity(n),
            ephemeral_udp_free: Vec::with_capacity(n),
            running_tasks: Vec::with_capacity(n),
        };
        self.ports_sent.reserve(n);
        for (i, inst) in state.instances().iter().enumerate() {
            cols.schedulable
                .push(u8::from(inst.spec.active && inst.spec.agent_connected));
            cols.cpu_total.push(inst.spec.cpu);
            cols.memory_total.push(inst.spec.memory);
            cols.cpu_free.push(state.cpu_free(i));
            cols.memory_free.push(state.mem_free(i));
            cols.ephemeral_tcp_free
                .push(range.saturating_sub(inst.ports[0].count_in(lo, hi) as u32));
            cols.ephemeral_udp_free
                .push(range.saturating_sub(inst.ports[1].count_in(lo, hi) as u32));
            cols.running_tasks.push(inst.running_tasks);
            self.ports_sent.push(Some(static_ports(inst, lo, hi)));
        }
        bindings
            .berth_placement0_1_0_policy()
            .call_sync_full(&mut *store, &cols)?;
        let bulk = match &self.policy.compiled.bulk_exports {
            Some(b) if self.host.config.bulk_sync => Some(b.clone()),
            _ => None,
        };
        match &bulk {
            Some(b) => self.sync_bulk(store, instance, bindings, b, state)?,
            None => self.sync_lists(store, instance, bindings, state)?,
        }
        self.synced = n;
        Ok(())
    }

    /// The id of attribute `name`, interned now (and listed in `new_names`)
    /// when new.
    fn attribute_id<'a>(&mut self, name: &'a str, new_names: &mut Vec<(u32, &'a str)>) -> u32 {
        match self.attributes.get(name) {
            Some(&id) => id,
            None => {
                let id = self.attributes.len() as u32;
                self.attributes.insert(name.to_owned(), id);
                new_names.push((id, name));
                id
            }
        }
    }

    /// Contract 0.3.0: one `set-attribute-column` per attribute name and one
    /// `set-ports-flat`, every list a bulk copy but the few distinct values.
    fn sync_bulk(
        &mut self,
        store: &mut Store<StoreData>,
        instance: &Instance,
        bindings: &PlacementPolicy,
        bulk: &BulkExports,
        state: &ClusterState,
    ) -> wasmtime::Result<()> {
        let n = state.len();
        let mut columns: Vec<Column<'_>> = Vec::new();
        let mut new_names = Vec::new();
        // Instances mostly list the same names in the same order: the name
        // at each position on the last instance is compared before hashing.
        let mut last: Vec<(&str, u32)> = Vec::new();
        for (i, inst) in state.instances().iter().enumerate() {
            for (k, (name, value)) in inst.spec.attributes.iter().enumerate() {
                let id = match last.get(k) {
                    Some(&(seen, id)) if seen == name => id,
                    _ => {
                        let id = self.attribute_id(name, &mut new_names);
                        last.truncate(k);
                        last.push((name, id));
                        id
                    }
                };
                let a = id as usize;
                if columns.len() <= a {
                    columns.resize_with(a + 1, || Column {
                        ids: vec![ABSENT; n],
                        values: Vec::new(),
                        index: FxHashMap::default(),
                    });
                }
                let col = &mut columns[a];
                col.ids[i] = col.id(value.as_deref());
            }
        }
        let mut tcp_offsets = Vec::with_capacity(n + 1);
        let mut udp_offsets = Vec::with_capacity(n + 1);
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for ports in &self.ports_sent {
            tcp_offsets.push(tcp.len() as u32);
            udp_offsets.push(udp.len() as u32);
            if let Some((t, u)) = ports {
                tcp.extend_from_slice(t);
                udp.extend_from_slice(u);
            }
        }
        tcp_offsets.push(tcp.len() as u32);
        udp_offsets.push(udp.len() as u32);
        let p = bindings.berth_placement0_1_0_policy();
        for (id, name) in &new_names {
            p.call_define_attribute(&mut *store, *id, name)?;
        }
        let set_column = instance
            .get_typed_func::<(u32, &[&str], &[u32]), ()>(&mut *store, &bulk.attribute_column)?;
        for (a, col) in columns.iter().enumerate() {
            set_column.call(&mut *store, (a as u32, &col.values, &col.ids))?;
        }
        instance
            .get_typed_func::<(&[u32], &[u16], &[u32], &[u16]), ()>(&mut *store, &bulk.ports_flat)?
            .call(&mut *store, (&tcp_offsets, &tcp, &udp_offsets, &udp))?;
        Ok(())
    }

    /// Contract 0.1.0: `set-attributes` and `set-ports`, a list per instance.
    fn sync_lists(
        &mut self,
        store: &mut Store<StoreData>,
        instance: &Instance,
        bindings: &PlacementPolicy,
        state: &ClusterState,
    ) -> wasmtime::Result<()> {
        // Attributes are lowered straight from the state's strings (no copy
        // on the host): one flat list, sliced per instance.
        let mut flat: Vec<Attr<'_>> = Vec::new();
        let mut spans = Vec::with_capacity(state.len());
        let mut new_names = Vec::new();
        for inst in state.instances() {
            let start = flat.len();
            for (name, value) in &inst.spec.attributes {
                let id = self.attribute_id(name, &mut new_names);
                flat.push((id, value.as_deref()));
            }
            spans.push(start..flat.len());
        }
        let attrs: Vec<(u32, &[Attr<'_>])> = spans
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32, &flat[r]))
            .collect();
        let ports: Vec<(u32, &[u16], &[u16])> = self
            .ports_sent
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (tcp, udp) = p.as_ref()?;
                (!tcp.is_empty() || !udp.is_empty()).then_some((i as u32, &tcp[..], &udp[..]))
            })
            .collect();
        let p = bindings.berth_placement0_1_0_policy();
        for (id, name) in &new_names {
            p.call_define_attribute(&mut *store, *id, name)?;
        }
        typed_export::<(&[(u32, &[Attr<'_>])],)>(instance, store, "set-attributes")?
            .call(&mut *store, (&attrs,))?;
        typed_export::<(&[(u32, &[u16], &[u16])],)>(instance, store, "set-ports")?
            .call(&mut *store, (&ports,))?;
        Ok(())
    }
}

/// Checks that a component's `bulk` functions have the types the host
/// calls them with (at load, so a mismatch refuses the install).
pub(crate) fn check_bulk(
    instance: &Instance,
    store: &mut Store<StoreData>,
    bulk: &BulkExports,
) -> wasmtime::Result<()> {
    instance.get_typed_func::<(u32, &[&str], &[u32]), ()>(&mut *store, &bulk.attribute_column)?;
    instance
        .get_typed_func::<(&[u32], &[u16], &[u32], &[u16]), ()>(&mut *store, &bulk.ports_flat)?;
    Ok(())
}

/// A function of the policy export taking `P` and returning nothing, typed
/// with borrowed parameters, so a full sync lowers the state's own strings
/// and lists instead of copies made for the generated bindings.
fn typed_export<P>(
    instance: &wasmtime::component::Instance,
    store: &mut Store<StoreData>,
    name: &str,
) -> wasmtime::Result<wasmtime::component::TypedFunc<P, ()>>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
{
    let missing = || wasmtime::Error::msg(format!("the policy export has no `{name}`"));
    let iface = instance
        .get_export_index(&mut *store, None, crate::host::POLICY_EXPORT)
        .ok_or_else(missing)?;
    let f = instance
        .get_export_index(&mut *store, Some(&iface), name)
        .ok_or_else(missing)?;
    instance.get_typed_func::<P, ()>(&mut *store, &f)
}
