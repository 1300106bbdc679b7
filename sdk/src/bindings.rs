//! The generated bindings of `berth:placement@0.3.0` (0.1.0's types, logger
//! and `policy` export, 0.2.0's `names` import, and the `bulk` export). Not part of the SDK's
//! stable surface: policies use the plain types of the crate root.
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: [
        "../wit/berth-placement-0.1.0",
        "../wit/berth-placement-0.2.0",
        "../wit/berth-placement-0.3.0",
    ],
    world: "berth:placement/placement-policy@0.3.0",
    pub_export_macro: true,
    export_macro_name: "export_placement_policy",
    default_bindings_module: "berth_sdk::bindings",
    // The 0.1.0 and 0.2.0 interfaces this world uses live in other packages.
    generate_all,
});
