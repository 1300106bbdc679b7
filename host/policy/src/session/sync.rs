//! The full sync of a fresh policy instance: the state's columns,
//! attributes and static ports, lowered from the state's own data.

use wasmtime::Store;
use wasmtime::component::Instance;

use berth_core::placement::ClusterState;

use super::{PolicySession, instance_name, static_ports, wit};
use crate::bindings::PlacementPolicy;
use crate::host::StoreData;

/// One attribute as `set-attributes` takes it: interned name, value.
type Attr<'a> = (u32, Option<&'a str>);

impl PolicySession {
    /// Sends the whole state to a fresh instance: `sync-full` (columns),
    /// the attribute names, `set-attributes` and `set-ports`.
    pub(super) fn full_sync(
        &mut self,
        store: &mut Store<StoreData>,
        instance: &Instance,
        bindings: &PlacementPolicy,
        state: &ClusterState,
    ) -> wasmtime::Result<()> {
        let n = state.len();
        if self.policy.compiled.uses_names {
            store.data_mut().names = state
                .instances()
                .iter()
                .map(|inst| instance_name(inst).into())
                .collect();
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
        // Attributes are lowered straight from the state's strings (no copy
        // on the host): one flat list, sliced per instance.
        let mut flat: Vec<Attr<'_>> = Vec::new();
        let mut spans = Vec::with_capacity(n);
        let mut new_names = Vec::new();
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
            let start = flat.len();
            for (name, value) in &inst.spec.attributes {
                let id = match self.attributes.get(name.as_str()) {
                    Some(&id) => id,
                    None => {
                        let id = self.attributes.len() as u32;
                        self.attributes.insert(name.clone(), id);
                        new_names.push((id, name.as_str()));
                        id
                    }
                };
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
        {
            p.call_sync_full(&mut *store, &cols)?;
            for (id, name) in &new_names {
                p.call_define_attribute(&mut *store, *id, name)?;
            }
            typed_export::<(&[(u32, &[Attr<'_>])],)>(instance, store, "set-attributes")?
                .call(&mut *store, (&attrs,))?;
            typed_export::<(&[(u32, &[u16], &[u16])],)>(instance, store, "set-ports")?
                .call(&mut *store, (&ports,))?;
        }
        self.synced = n;
        Ok(())
    }
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
