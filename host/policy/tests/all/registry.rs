//! The registry: install, list, show, activate, deactivate, remove, restart,
//! and the atomic swap under a stream of decisions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_core::placement::synthetic;
use berth_policy::{Fallback, Registry, RegistryError, Scope};
use berth_store::Store;

use crate::{host, plugin, request};

fn open(dir: &tempfile::TempDir) -> Registry {
    let store = Store::open(dir.path().join("berth.redb")).expect("store opens");
    Registry::open(host(), store).expect("registry opens")
}

#[test]
fn install_activate_remove_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Scope::Cluster("prod".into());
    let service = Scope::Service {
        cluster: "prod".into(),
        service: "web".into(),
    };
    let (binpack, spread);
    {
        let reg = open(&dir);
        binpack = reg.install(&plugin("binpack")).expect("install binpack");
        assert_eq!(binpack, berth_policy::sha256_hex(&plugin("binpack")));
        assert_eq!(
            reg.install(&plugin("binpack")).expect("idempotent"),
            binpack
        );
        spread = reg.install(&plugin("spread")).expect("install spread");
        let list = reg.list();
        assert_eq!(
            list.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["binpack", "spread"]
        );
        let shown = reg.show("binpack").expect("show by name");
        assert_eq!(shown.sha256, binpack);
        assert_eq!(shown.world, "berth:placement/placement-policy@0.3.0");
        assert_eq!(shown.size, plugin("binpack").len());
        // Refused installs change nothing.
        assert!(matches!(
            reg.install(b"\0asm\x01\0\0\0"),
            Err(RegistryError::Install(_))
        ));
        assert!(matches!(
            reg.install(&plugin("hostile_wrong_world")),
            Err(RegistryError::Install(_))
        ));
        assert_eq!(reg.list().len(), 2);

        reg.activate(&cluster, &binpack)
            .expect("activate on cluster");
        reg.activate(&service, "spread")
            .expect("activate on service");
        assert_eq!(
            reg.resolve("prod", Some("web"), None)
                .expect("resolve")
                .map(|p| p.name.clone())
                .as_deref(),
            Some("spread")
        );
        assert_eq!(
            reg.resolve("prod", Some("api"), None)
                .expect("resolve")
                .map(|p| p.name.clone())
                .as_deref(),
            Some("binpack")
        );
        assert_eq!(
            reg.resolve("prod", None, Some(&spread[..12]))
                .expect("resolve")
                .map(|p| p.name.clone())
                .as_deref(),
            Some("spread")
        );
        assert!(reg.resolve("dev", None, None).expect("resolve").is_none());
        match reg.remove(&binpack) {
            Err(RegistryError::InUse { scopes, .. }) => assert_eq!(scopes, ["cluster/prod"]),
            other => panic!("remove of an active policy must be refused, got {other:?}"),
        }
        let mut runner = reg.runner(&cluster, Fallback::Pending);
        let mut state = synthetic::cluster(50, 2);
        let d = runner.decide(&mut state, &request("service:api", 128, 128, &[], &[]), 2);
        assert!(d.failure.is_none());
        assert_eq!(d.policy.as_deref(), Some(binpack.as_str()));
        assert_eq!(reg.show(&binpack).expect("show").stats.decisions, 1);
    }
    {
        // Restart: policies and bindings come back from the store.
        let reg = open(&dir);
        assert_eq!(reg.list().len(), 2);
        assert_eq!(
            reg.show(&binpack).expect("show").active_in,
            ["cluster/prod"]
        );
        assert_eq!(
            reg.resolve("prod", Some("web"), None)
                .expect("resolve")
                .map(|p| p.compiled.sha256.clone()),
            Some(spread.clone())
        );
        reg.deactivate(&service).expect("deactivate");
        reg.remove(&spread).expect("remove an inactive policy");
        assert!(matches!(reg.show(&spread), Err(RegistryError::NotFound(_))));
    }
    let reg = open(&dir);
    assert_eq!(reg.list().len(), 1);
}

#[test]
fn swapping_policies_under_a_stream_of_decisions_fails_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Arc::new(open(&dir));
    let scope = Scope::Cluster("swap".into());
    let a = reg.install(&plugin("binpack")).expect("install");
    let b = reg.install(&plugin("spread")).expect("install");
    reg.activate(&scope, &a).expect("activate");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (reg, stop, scope) = (reg.clone(), stop.clone(), scope.clone());
            std::thread::spawn(move || {
                let mut runner = reg.runner(&scope, Fallback::Pending);
                let req = request("service:web", 1, 1, &[], &[]);
                let (mut decisions, mut policies) = (0u32, std::collections::HashSet::new());
                while !stop.load(Ordering::Relaxed) || decisions < 200 {
                    let mut state = synthetic::cluster(64, w);
                    let d = runner.decide(&mut state, &req, 1);
                    assert!(
                        d.failure.is_none(),
                        "a decision failed during swaps: {:?}",
                        d.failure
                    );
                    assert!(d.answers.iter().all(|x| x.is_ok()), "{:?}", d.answers);
                    policies.insert(d.policy.expect("a policy decided"));
                    decisions += 1;
                }
                (decisions, policies.len())
            })
        })
        .collect();
    for i in 0..100 {
        reg.activate(&scope, if i % 2 == 0 { &b } else { &a })
            .expect("swap");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let (decisions, seen) = w.join().expect("worker panicked");
        assert!(decisions >= 200);
        assert_eq!(seen, 2, "both versions decided");
    }
    for id in [&a, &b] {
        let s = reg.show(id).expect("show").stats;
        assert!(s.failures.iter().all(|(_, n)| *n == 0), "{s:?}");
    }
}

#[test]
fn another_registry_over_the_same_store_is_followed_at_the_next_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("berth.redb")).expect("store opens");
    // Two control planes' registries over one store, sharing nothing else.
    let here = Registry::open(host(), store.clone()).expect("registry opens");
    let there = Registry::open(host(), store.clone()).expect("registry opens");
    let cluster = Scope::Cluster("prod".into());
    let service = Scope::Service {
        cluster: "prod".into(),
        service: "web".into(),
    };
    let name_of = |reg: &Registry, service: Option<&str>| {
        reg.resolve("prod", service, None)
            .expect("resolve")
            .map(|p| p.name.clone())
    };
    assert_eq!(name_of(&here, None), None);

    // Installed and activated over there: in force here at the next decision.
    there.install(&plugin("binpack")).expect("install");
    there
        .activate_with(&cluster, "binpack", Fallback::Pending)
        .expect("activate");
    assert_eq!(name_of(&here, None).as_deref(), Some("binpack"));
    assert_eq!(
        here.resolve_with_fallback("prod", None, None)
            .expect("resolve")
            .map(|(_, f)| f),
        Some(Fallback::Pending)
    );
    assert_eq!(
        here.show("binpack").expect("shown").active_in,
        ["cluster/prod"]
    );

    // A binding buffered in a caller's transaction commits with it.
    there.install(&plugin("spread")).expect("install");
    let spread = there.get("spread").expect("loaded");
    store
        .update(|txn| there.bind_in(txn, &service, &spread, Fallback::Native))
        .expect("commit");
    assert_eq!(name_of(&here, Some("web")).as_deref(), Some("spread"));
    assert_eq!(name_of(&there, Some("web")).as_deref(), Some("spread"));

    // Deactivated here: gone over there too, and then removable.
    here.deactivate(&cluster).expect("deactivate");
    assert_eq!(name_of(&there, None), None);
    assert_eq!(name_of(&there, Some("api")), None);
    there.remove("binpack").expect("removable");
    assert!(matches!(
        here.show("binpack"),
        Err(RegistryError::NotFound(_))
    ));
}
